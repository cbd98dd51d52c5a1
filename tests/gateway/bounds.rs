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
    addr: std::net::SocketAddr,
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
        // Not opened: this gateway answers live.
        "unused.sqlite",
    );
    let config = demo_config(&values).unwrap();
    let token = mint_dev_token(&config.auth, "demo", Utc::now().timestamp()).unwrap();
    let providers = build_providers(&config).unwrap();
    let state = AppState::new(config, providers).unwrap();
    let bound = usage_gateway::server::bind(state).unwrap();
    let base = format!("http://{}", bound.addr);
    let addr = bound.addr;
    actix_web::rt::spawn(bound.run());
    Running {
        base,
        addr,
        token,
        sims,
    }
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
    // Past actix-http's own cap (more than 96 header lines) too.
    let mut huge = HeaderMap::new();
    for i in 0..120 {
        huge.insert(
            HeaderName::from_bytes(format!("x-many-{i}").as_bytes()).unwrap(),
            HeaderValue::from_static("1"),
        );
    }
    let (s, ct, v) = send(&r, "", huge, None).await;
    assert_eq!((s, ct.as_str()), (431, "application/problem+json"), "{v}");

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

/// One answer read off a raw connection.
struct Raw {
    status: u16,
    /// Lower-cased names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Everything the server sent before closing.
    bytes: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` on a new connection and reads until the server closes it (or 10 s pass);
/// parses the first response.
fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> Raw {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // The server may answer before it has read everything: a failed write is not an error.
    let _ = conn.write_all(request);
    let mut bytes = Vec::new();
    let _ = conn.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        panic!("no response head in {text:?}");
    };
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(rest.len(), |(_, v)| v.parse().unwrap());
    let body = rest.as_bytes()[..len].to_vec();
    Raw {
        status,
        headers,
        body,
        bytes,
    }
}

/// Request heads past the gateway's bounds, up to and past those of actix-http's own codec (96
/// header lines, 128 KiB of head, a 64 KiB request target), sent over a raw socket: each is
/// answered problem+json with a request id and a detail naming the gateway's bound, counted
/// like any request, and the connection is closed; requests before it on the same connection are
/// answered, and the server keeps serving.
#[actix_web::test]
async fn oversized_request_heads_are_problems_too() {
    let r = start().await;
    let addr = r.addr;
    let head = |extra: &str| format!("GET /v1/usage HTTP/1.1\r\nhost: gw\r\n{extra}\r\n");
    let lines = |n: usize| -> String {
        (0..n)
            .map(|i| format!("x-line-{i}: 1\r\n"))
            .collect::<Vec<_>>()
            .concat()
    };
    let value = |kib: usize| format!("x-big: {}\r\n", "b".repeat(kib * 1024));
    let target = |kib: usize| {
        format!(
            "GET /v1/usage?user={} HTTP/1.1\r\nhost: gw\r\n\r\n",
            "u".repeat(kib * 1024)
        )
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("100 header lines", head(&lines(100)), 431, "at most 64"),
        ("70 KiB header value", head(&value(70)), 431, "16384"),
        ("20 KiB query", target(20), 400, "8192"),
        ("140 KiB header value", head(&value(140)), 431, "16384"),
        ("70 KiB query", target(70), 400, "8192"),
    ];
    for (name, request, status, bound) in cases {
        let raw = actix_web::rt::task::spawn_blocking(move || exchange(addr, request.as_bytes()))
            .await
            .unwrap();
        let shown = String::from_utf8_lossy(&raw.bytes[..raw.bytes.len().min(600)]).into_owned();
        assert_eq!(raw.status, status, "{name}: {shown}");
        assert_eq!(
            raw.header("content-type"),
            Some("application/problem+json"),
            "{name}: {shown}"
        );
        let id = raw.header("x-request-id").unwrap_or_default();
        assert!(!id.is_empty(), "{name}: {shown}");
        let problem: Value = serde_json::from_slice(&raw.body).unwrap();
        assert_eq!(problem["status"], status, "{name}");
        assert_eq!(
            problem["instance"],
            format!("urn:request-id:{id}"),
            "{name}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains(bound),
            "{name}: {problem}"
        );
        // A normal request on a new connection is served.
        let ok = actix_web::rt::task::spawn_blocking(move || {
            exchange(
                addr,
                b"GET /healthz HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n",
            )
        })
        .await
        .unwrap();
        assert_eq!(ok.status, 200, "{name}: the server still serves");
    }

    // Pipelined after two requests on one connection: those two are answered, then the 431.
    let healthz = "GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n";
    let pipelined = format!("{healthz}{healthz}{}{healthz}", head(&lines(100)));
    let raw = actix_web::rt::task::spawn_blocking(move || exchange(addr, pipelined.as_bytes()))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&raw.bytes);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "200", "431"], "{text}");

    // Each refusal is counted (and logged) as a request of the route `(head)`.
    let metrics = reqwest::get(format!("{}/metrics", r.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (status, at_least) in [("431", 4.0), ("400", 2.0)] {
        let count: f64 = metrics
            .lines()
            .find(|l| {
                l.starts_with("usage_gateway_http_requests_total{")
                    && l.contains("route=\"(head)\"")
                    && l.contains(&format!("status=\"{status}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        assert!(count >= at_least, "{status}: {count} in\n{metrics}");
    }
}
