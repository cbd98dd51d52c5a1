//! The OpenAPI document tells the truth: every documented enum value is accepted, undocumented
//! methods answer 405 with `Allow`, and what schemathesis checks in CI (`.ci/schemathesis.sh`)
//! holds for the basics without Python.

use actix_web::test::{TestRequest, call_service};
use chrono::{TimeZone, Utc};
use serde_json::Value;
use usage_gateway::config::ServerConfig;
use usage_gateway::query;

use crate::common::{app, harness};

fn document() -> Value {
    serde_json::from_str(&usage_gateway::openapi::document_json()).unwrap()
}

fn enum_of(doc: &Value, schema: &str) -> Vec<String> {
    doc["components"]["schemas"][schema]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{schema} has an enum"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_documented_value_is_accepted() {
    let doc = document();
    let now = Utc.with_ymd_and_hms(2026, 11, 8, 10, 0, 0).unwrap();
    let limits = ServerConfig::default();
    let accepted = |q: &str| {
        query::parse(q, &limits, now).unwrap_or_else(|e| panic!("{q}: {e:?}"));
    };
    let zones = enum_of(&doc, "TimeZone");
    assert!(zones.len() > 400, "{}", zones.len());
    for tz in &zones {
        accepted(&serde_urlencoded::to_string([("tz", tz)]).unwrap());
    }
    for b in enum_of(&doc, "Bucket") {
        accepted(&format!("bucket={b}&start=2026-11-01&end=2026-11-02"));
    }
    for f in enum_of(&doc, "Format") {
        accepted(&format!("format={f}"));
    }
    // The patterns name exactly the values the parser knows.
    let pattern = doc["components"]["schemas"]["GroupBy"]["pattern"]
        .as_str()
        .unwrap();
    for d in [
        "source",
        "provider",
        "agent",
        "user",
        "conversation",
        "usage_type",
    ] {
        assert!(pattern.contains(d), "{d}");
        accepted(&format!("group_by={d}"));
    }
    accepted("group_by=%20agent%20,,user%20");
    let providers = doc["components"]["schemas"]["ProviderList"]["pattern"]
        .as_str()
        .unwrap();
    for p in ["digitalocean", "kibana", "chatbotkit"] {
        assert!(providers.contains(p), "{p}");
        accepted(&format!("provider={p}"));
    }
    let max_items = doc["paths"]["/v1/usage"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "user")
        .unwrap()["schema"]["maxItems"]
        .as_u64()
        .unwrap();
    assert_eq!(max_items, limits.max_filter_values as u64);
    let longest = "é".repeat(query::MAX_VALUE_CHARS);
    accepted(&serde_urlencoded::to_string([("user", &longest)]).unwrap());
}

#[actix_web::test]
async fn undocumented_methods_answer_405_with_allow() {
    let h = harness("2s");
    let app = app(&h).await;
    let doc = document();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert!(paths.len() >= 7, "{paths:?}");
    for path in paths {
        for method in ["POST", "PUT", "DELETE", "PATCH", "TRACE"] {
            let req = TestRequest::default()
                .method(method.parse().unwrap())
                .uri(path)
                .to_request();
            let resp = call_service(&app, req).await;
            assert_eq!(resp.status(), 405, "{method} {path}");
            assert_eq!(
                resp.headers().get("allow").unwrap(),
                "GET",
                "{method} {path}"
            );
            assert_eq!(
                resp.headers().get("content-type").unwrap(),
                "application/problem+json"
            );
        }
    }
}
