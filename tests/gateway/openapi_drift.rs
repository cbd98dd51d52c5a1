//! The committed `openapi/openapi.json` is what the binary serves.

use crate::common::{app, harness};
use actix_web::test;
use serde_json::{Value, json};

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
        "/v1/usage.csv",
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

/// `doc`'s schema `s`, with a `$ref` to `#/components/schemas/` followed.
fn resolved<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => &doc["components"]["schemas"][r.strip_prefix("#/components/schemas/").unwrap()],
        None => s,
    }
}

fn operation<'a>(doc: &'a Value, path: &str) -> &'a Value {
    &doc["paths"][path]["get"]
}

/// Issue item 7: Swagger UI's "Execute" sent the example values (a fixed November week,
/// Europe/Berlin) because it pre-fills a field from the parameter's `example`/`examples`, or its
/// schema's `example`/`default`; and `tz` was a 597-entry dropdown (an `enum`). An optional
/// query parameter of the usage operations now pre-fills nothing, and `tz` is typed text.
#[actix_web::test]
async fn swagger_ui_prefills_no_usage_parameter_and_tz_is_text() {
    let doc: Value = serde_json::from_str(&usage_gateway::openapi::document_json()).unwrap();
    for path in ["/v1/usage", "/v1/usage.csv"] {
        for p in operation(&doc, path)["parameters"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            for key in ["example", "examples", "default"] {
                assert!(p.get(key).is_none(), "{path} `{name}` has `{key}`");
            }
            // What Swagger UI reads of the schema: the schema itself, or an array's items.
            for s in [&p["schema"], &p["schema"]["items"]] {
                let s = resolved(&doc, s);
                for key in ["example", "default"] {
                    assert!(s.get(key).is_none(), "{path} `{name}`: schema `{key}`");
                }
            }
        }
        let tz = operation(&doc, path)["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "tz")
            .unwrap();
        let schema = resolved(&doc, &tz["schema"]);
        assert!(schema.get("enum").is_none(), "{path}: `tz` is an enum");
        assert_eq!(schema["type"], "string");
        // JSON Schema `examples` (an array), which Swagger UI does not put into the field.
        assert_eq!(
            schema["examples"],
            json!(["UTC", "Europe/Berlin", "Asia/Kolkata"])
        );
        assert!(schema["description"].as_str().unwrap().contains("400"));
    }
}

/// Issue item 2: with `application/json` and `text/csv` under one 200, generated clients typed
/// getUsage's answer as `UsageResponse | string` (TypeScript) or parsed CSV as JSON (Python).
/// Now getUsage's 200 is JSON only and getUsageCsv's is text only; apart from that and
/// `format`, the two operations are documented alike.
#[actix_web::test]
async fn json_and_csv_are_separate_operations_documented_alike() {
    let doc: Value = serde_json::from_str(&usage_gateway::openapi::document_json()).unwrap();
    let json_op = operation(&doc, "/v1/usage");
    let csv_op = operation(&doc, "/v1/usage.csv");
    assert_eq!(json_op["operationId"], "getUsage");
    assert_eq!(csv_op["operationId"], "getUsageCsv");
    let media = |op: &Value| -> Vec<String> {
        op["responses"]["200"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(media(json_op), ["application/json"]);
    assert_eq!(media(csv_op), ["text/csv"]);
    assert_eq!(
        csv_op["responses"]["200"]["content"]["text/csv"]["schema"],
        json!({"type": "string"})
    );
    // `format` on getUsage documents its JSON value only (`format=csv` would be a CSV 200).
    let format = json_op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "format")
        .unwrap();
    assert_eq!(resolved(&doc, &format["schema"])["enum"], json!(["json"]));
    let without_format: Vec<&Value> = json_op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] != "format")
        .collect();
    let csv_params: Vec<&Value> = csv_op["parameters"].as_array().unwrap().iter().collect();
    assert_eq!(csv_params, without_format);
    for status in ["304", "400", "401", "403", "413", "431", "502", "504"] {
        assert_eq!(
            csv_op["responses"][status], json_op["responses"][status],
            "{status}"
        );
    }
    for op in [json_op, csv_op] {
        let headers = op["responses"]["200"]["headers"].as_object().unwrap();
        for h in ["ETag", "Cache-Control", "x-usage-complete"] {
            assert!(headers.contains_key(h), "{} {h}", op["operationId"]);
        }
        for (status, r) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                let media: Vec<&String> = r["content"].as_object().unwrap().keys().collect();
                assert_eq!(media, ["application/problem+json"], "{status}");
            }
        }
    }
    assert_eq!(csv_op["security"], json_op["security"]);
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

/// Every `$ref` of the document names a schema it has (a parameter type left out of the
/// component list would otherwise only show in the spec validator of CI).
#[actix_web::test]
async fn every_schema_reference_resolves() {
    let doc = usage_gateway::openapi::document_json();
    let v: Value = serde_json::from_str(&doc).unwrap();
    let schemas = v["components"]["schemas"].as_object().unwrap();
    let prefix = "#/components/schemas/";
    for (at, _) in doc.match_indices(prefix) {
        let name: String = doc[at + prefix.len()..]
            .chars()
            .take_while(|c| *c != '"')
            .collect();
        assert!(
            schemas.contains_key(&name),
            "`{prefix}{name}` resolves to nothing"
        );
    }
}
