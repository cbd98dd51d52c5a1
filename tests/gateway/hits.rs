//! Remembered cache hits: a repeated `GET /v1/usage` is answered ahead of routing, auth and
//! parsing (`routes::usage::fast_hit`). Each test checks one thing such an answer must never
//! outlive or skip.

use std::time::Duration;

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use serde_json::json;

use crate::common::{
    RANGE, app, claims, config_text, get, harness, harness_from, json_of, token, token_with,
};

fn uri() -> String {
    format!("/v1/usage?{RANGE}&bucket=day")
}

/// Asks [`uri`] `times` times with token `t`, expecting 200 each time: from the second time
/// on, the answer is a remembered one.
async fn ask(
    app: &impl Service<Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error>,
    t: &str,
    times: usize,
) {
    for _ in 0..times {
        assert_eq!(get(app, &uri(), Some(t), &[]).await.0, 200);
    }
}

#[actix_web::test]
async fn a_refresh_replaces_the_remembered_answer() {
    let h = harness("2s");
    let app = app(&h).await;
    let t = token("admin");
    let (_, _, first) = get(&app, &uri(), Some(&t), &[]).await;
    let (s, _, again) = get(&app, &uri(), Some(&t), &[]).await;
    assert_eq!((s, h.alpha.calls()), (200, 1));
    assert_eq!(first, again);
    // The refetch is slow, so its `duration_ms` tells its answer from the first one.
    h.alpha.set_latency(Duration::from_millis(40));
    let (s, _, refreshed) = get(&app, &uri(), Some(&t), &[("Cache-Control", "no-cache")]).await;
    assert_eq!((s, h.alpha.calls()), (200, 2));
    let took = |body: &[u8]| json_of(body)["sources"][0]["duration_ms"].as_f64().unwrap();
    assert!(took(&refreshed) >= 40.0 && took(&first) < 40.0);
    let (s, _, after) = get(&app, &uri(), Some(&t), &[]).await;
    assert_eq!((s, h.alpha.calls()), (200, 2));
    assert_eq!(
        after, refreshed,
        "the refreshed answer, not the remembered one"
    );
}

#[actix_web::test]
async fn a_remembered_answer_ends_with_its_cache_entry() {
    let text = config_text("2s")
        .replace("open_ttl = \"30s\"", "open_ttl = \"1s\"")
        .replace("closed_ttl = \"1h\"", "closed_ttl = \"1s\"");
    let h = harness_from(&text);
    let app = app(&h).await;
    let t = token("admin");
    ask(&app, &t, 3).await;
    assert_eq!(h.alpha.calls(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&app, &uri(), Some(&t), &[]).await.0, 200);
    assert_eq!(h.alpha.calls(), 2, "an expired answer is fetched again");
}

#[actix_web::test]
async fn a_remembered_answer_ends_with_its_token() {
    let h = harness("2s");
    let app = app(&h).await;
    // `exp` 4 s ago with 5 s of leeway: still accepted for a second or two.
    let exp = chrono::Utc::now().timestamp() - 4;
    let mut c = claims("admin");
    c["exp"] = json!(exp);
    let t = token_with(c);
    ask(&app, &t, 3).await;
    // The first second after `exp + leeway` that a new token would be refused in.
    let wait = u64::try_from(exp + 6 - chrono::Utc::now().timestamp()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait * 1000 + 200)).await;
    let (s, headers, _) = get(&app, &uri(), Some(&t), &[]).await;
    assert_eq!(s, 401, "expired while remembered");
    assert!(headers.contains_key("www-authenticate"));
}

#[actix_web::test]
async fn only_the_very_same_token_finds_a_remembered_answer() {
    let h = harness("2s");
    let app = app(&h).await;
    let t = token("admin");
    ask(&app, &t, 2).await;
    let forged = crate::common::forge_signature(&t);
    assert_eq!(get(&app, &uri(), Some(&forged), &[]).await.0, 401);
    assert_eq!(get(&app, &uri(), None, &[]).await.0, 401);
    // A narrower caller asking the same query gets its own answer.
    let (s, _, body) = get(&app, &uri(), Some(&crate::common::team_token("ops")), &[]).await;
    assert_eq!(s, 200);
    assert_eq!(json_of(&body)["sources"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn format_and_conditional_requests_are_honoured_on_a_remembered_answer() {
    let h = harness("2s");
    let app = app(&h).await;
    let t = token("admin");
    let csv = [("Accept", "text/csv")];
    for _ in 0..2 {
        let (s, headers, _) = get(&app, &uri(), Some(&t), &[]).await;
        assert_eq!(s, 200);
        assert_eq!(headers.get("content-type").unwrap(), "application/json");
        let (s, headers, body) = get(&app, &uri(), Some(&t), &csv).await;
        assert_eq!(s, 200);
        assert!(
            headers
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("text/csv"),
            "{headers:?}"
        );
        assert!(
            body.starts_with(b"bucket_start,"),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    let (_, headers, _) = get(&app, &uri(), Some(&t), &[]).await;
    let etag = headers.get("etag").unwrap().to_str().unwrap().to_owned();
    let (s, headers, body) = get(&app, &uri(), Some(&t), &[("If-None-Match", &etag)]).await;
    assert_eq!(s, 304);
    assert!(body.is_empty());
    assert_eq!(headers.get("etag").unwrap().to_str().unwrap(), etag);
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(h.alpha.calls(), 1);
}

#[actix_web::test]
async fn size_bounds_apply_to_a_remembered_request() {
    let h = harness("2s");
    let app = app(&h).await;
    let t = token("admin");
    ask(&app, &t, 2).await;
    let big = "v".repeat(h.state.server.max_header_bytes);
    let (s, headers, _) = get(&app, &uri(), Some(&t), &[("x-big", &big)]).await;
    assert_eq!(s, 431);
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/problem+json"
    );
}

#[actix_web::test]
async fn a_query_up_to_now_is_never_remembered() {
    let h = harness("2s");
    let app = app(&h).await;
    let t = token("admin");
    let uri = "/v1/usage?start=2026-10-01T00:00:00Z";
    let end = |body: &[u8]| json_of(body)["query"]["end"].as_str().unwrap().to_owned();
    let (s, _, first) = get(&app, uri, Some(&t), &[]).await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _, later) = get(&app, uri, Some(&t), &[]).await;
    assert_eq!(s, 200);
    assert_ne!(end(&first), end(&later), "`end` follows the clock");
}

#[actix_web::test]
async fn a_csv_operation_answer_is_never_remembered_for_v1_usage() {
    let h = harness("2s");
    let app = app(&h).await;
    let t = token("admin");
    let query = uri().replacen("/v1/usage?", "", 1);
    // The same token, query string and `Accept`: only the path differs.
    for _ in 0..2 {
        let (s, headers, _) = get(&app, &format!("/v1/usage.csv?{query}"), Some(&t), &[]).await;
        assert_eq!(s, 200);
        assert_eq!(
            headers.get("content-type").unwrap(),
            "text/csv; charset=utf-8"
        );
    }
    for _ in 0..2 {
        let (s, headers, body) = get(&app, &uri(), Some(&t), &[]).await;
        assert_eq!(s, 200);
        assert_eq!(headers.get("content-type").unwrap(), "application/json");
        assert!(json_of(&body)["rows"].is_array());
    }
}
