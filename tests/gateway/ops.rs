//! Operations: request ids, problem `instance`, Prometheus metrics.

use actix_web::test;

use crate::common::{RANGE, app, harness, token};

fn series_value(text: &str, name: &str, must_contain: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && must_contain.iter().all(|m| l.contains(m)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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
    let scrape = || async {
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        String::from_utf8(test::read_body(resp).await.to_vec()).unwrap()
    };
    let before = scrape().await;
    let req = test::TestRequest::get()
        .uri(&format!("/v1/usage?{RANGE}&bucket=day"))
        .insert_header(("Authorization", format!("Bearer {}", token("admin"))))
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 200);
    let after = scrape().await;
    let route = ["route=\"/v1/usage\"", "status=\"200\""];
    assert!(
        series_value(&after, "http_requests_total", &route)
            >= series_value(&before, "http_requests_total", &route) + 1.0,
        "{after}"
    );
    assert!(after.contains("http_request_duration_seconds_bucket"));
    assert!(
        series_value(
            &after,
            "upstream_calls_total",
            &["source=\"alpha\"", "outcome=\"ok\""]
        ) >= 1.0
    );
    assert!(series_value(&after, "upstream_requests_total", &["source=\"alpha\""]) >= 1.0);
    assert!(after.contains("upstream_call_duration_seconds_bucket"));
    assert!(
        series_value(&after, "cache_lookups_total", &["result=\"miss\""])
            >= series_value(&before, "cache_lookups_total", &["result=\"miss\""]) + 4.0
    );
    assert!(after.contains("cache_entries{cache=\"windows\"}"));
    assert!(after.contains("cache_weighted_bytes{cache=\"windows\"}"));
    assert!(after.contains("http_requests_in_flight"));
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
    assert_eq!(r["span"]["request_id"], "log-test-1");
    assert_eq!(r["span"]["name"], "request");
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
    assert!(!logs.text().contains(&t), "the token is never logged");
}
