//! Resource bounds (OWASP API4) on the real server over the three simulators: range, buckets,
//! filter lists and values, query-string, header and body sizes, and upstream calls per query are
//! each refused with 400/413/431 (problem+json) before any vendor call.

use chrono::Utc;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use usage_gateway::auth::mint_dev_token;
use usage_gateway::demo::{demo_config, demo_values};
use usage_gateway::registry::build_providers;
use usage_gateway::state::AppState;
use usage_sim::DataSpec;

pub(crate) struct Running {
    base: String,
    token: String,
    pub(crate) sims: usage_sim::Simulators,
}

/// Starts the demo configuration on a free port over fresh simulators.
pub(crate) async fn start() -> Running {
    let sims = usage_sim::start_all(&DataSpec::small(Utc::now()))
        .await
        .unwrap();
    let values = demo_values(
        &sims,
        "127.0.0.1:0".parse().unwrap(),
        "bounds-secret-0123456789abcdef0123456789",
    );
    let config = demo_config(&values).unwrap();
    let token = mint_dev_token(&config.auth, "demo", Utc::now().timestamp()).unwrap();
    let providers = build_providers(&config).unwrap();
    let state = AppState::new(config, providers).unwrap();
    let bound = usage_gateway::server::bind(state).unwrap();
    let base = format!("http://{}", bound.addr);
    actix_web::rt::spawn(bound.run());
    Running { base, token, sims }
}

fn vendor_calls(r: &Running) -> u64 {
    r.sims.digitalocean.total_calls()
        + r.sims.kibana.total_calls()
        + r.sims.chatbotkit.total_calls()
}

/// Sends `GET /v1/usage?{query}` with the demo token and extra headers/body; returns status,
/// content type and JSON body (`Null` when the body is not JSON).
pub(crate) async fn send(
    r: &Running,
    query: &str,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
) -> (u16, String, Value) {
    let mut req = reqwest::Client::new()
        .get(format!("{}/v1/usage?{query}", r.base))
        .bearer_auth(&r.token)
        .headers(headers);
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        ct,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn parameters(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["parameter"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[actix_web::test]
async fn every_bound_is_refused_before_any_vendor_call() {
    let r = start().await;
    let agents = (0..101)
        .map(|i| format!("a{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let long_user = "u".repeat(257);
    let long_query = format!("user={}", "u,".repeat(4200));
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        (
            "range",
            "start=2020-01-01&end=2026-01-01".into(),
            400,
            Some("end"),
        ),
        (
            "buckets",
            "start=2025-01-01&end=2025-12-01&bucket=hour".into(),
            400,
            Some("bucket"),
        ),
        ("filter list", format!("agent={agents}"), 400, Some("agent")),
        (
            "filter value",
            format!("user={long_user}"),
            400,
            Some("user"),
        ),
        ("query string", long_query, 400, Some("(query)")),
    ];
    for (name, query, status, param) in cases {
        let (s, ct, v) = send(&r, &query, HeaderMap::new(), None).await;
        assert_eq!(s, status, "{name}: {v}");
        assert_eq!(ct, "application/problem+json", "{name}");
        if let Some(p) = param {
            assert!(parameters(&v).contains(&p.to_owned()), "{name}: {v}");
        }
    }

    // Too many header lines, too many header bytes: 431 problem+json.
    let mut many = HeaderMap::new();
    for i in 0..70 {
        many.insert(
            HeaderName::from_bytes(format!("x-extra-{i}").as_bytes()).unwrap(),
            HeaderValue::from_static("1"),
        );
    }
    let mut big = HeaderMap::new();
    big.insert(
        "x-big",
        HeaderValue::from_str(&"b".repeat(17 * 1024)).unwrap(),
    );
    for (name, headers) in [("header lines", many), ("header bytes", big)] {
        let (s, ct, v) = send(&r, "", headers, None).await;
        assert_eq!(s, 431, "{name}: {v}");
        assert_eq!(ct, "application/problem+json", "{name}");
        assert_eq!(v["status"], 431);
    }
    // actix-web's own cap (more than 96 header lines) still answers 431.
    let mut huge = HeaderMap::new();
    for i in 0..120 {
        huge.insert(
            HeaderName::from_bytes(format!("x-many-{i}").as_bytes()).unwrap(),
            HeaderValue::from_static("1"),
        );
    }
    assert_eq!(send(&r, "", huge, None).await.0, 431);

    // A body where none is taken: 413.
    let (s, ct, v) = send(&r, "", HeaderMap::new(), Some(vec![b'x'; 20 * 1024])).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(ct, "application/problem+json");

    assert_eq!(vendor_calls(&r), 0, "no vendor was called");

    // Upstream calls per query: 4 DigitalOcean agents × 168 hourly windows exceeds the source's
    // `max_upstream_calls` (250). Agent discovery may run; no usage request is sent.
    let (s, _, v) = send(
        &r,
        "source=do-prod&bucket=hour&start=2026-01-01&end=2026-01-08",
        HeaderMap::new(),
        None,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(parameters(&v).contains(&"bucket".to_owned()), "{v}");
    assert_eq!(r.sims.digitalocean.calls("do.usage"), 0);
    assert_eq!(
        r.sims.kibana.total_calls() + r.sims.chatbotkit.total_calls(),
        0
    );
}
