//! The committed `openapi/openapi.json` is what the binary serves.

use crate::common::{app, harness};
use actix_web::test;

#[actix_web::test]
async fn committed_document_matches_served_document() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../openapi/openapi.json"
    ))
    .expect("openapi/openapi.json is committed");
    let generated = usage_gateway::openapi::document_json();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `cargo run -p usage-gateway -- openapi > openapi/openapi.json`"
    );
    let h = harness("2s");
    let app = app(&h).await;
    let resp = test::call_service(
        &app,
        test::TestRequest::get().uri("/openapi.json").to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body = test::read_body(resp).await;
    assert_eq!(std::str::from_utf8(&body).unwrap(), committed);
}

#[actix_web::test]
async fn document_is_openapi_3_1_with_bearer_scheme() {
    let doc: serde_json::Value =
        serde_json::from_str(&usage_gateway::openapi::document_json()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer_jwt"]["scheme"],
        "bearer"
    );
    for p in [
        "/v1/usage",
        "/v1/sources",
        "/v1/agents",
        "/healthz",
        "/readyz",
    ] {
        assert!(doc["paths"][p]["get"].is_object(), "{p} documented");
    }
    let params: Vec<&str> = doc["paths"]["/v1/usage"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "start", "end", "tz", "bucket", "group_by", "source", "provider", "agent", "user", "format",
    ] {
        assert!(params.contains(&p), "{p} documented");
    }
}

#[actix_web::test]
async fn swagger_ui_is_served_offline() {
    let h = harness("2s");
    let app = app(&h).await;
    let resp = test::call_service(&app, test::TestRequest::get().uri("/docs/").to_request()).await;
    assert_eq!(resp.status(), 200);
    let body = test::read_body(resp).await;
    assert!(std::str::from_utf8(&body).unwrap().contains("swagger"));
}
