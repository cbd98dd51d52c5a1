//! The OpenAPI document tells the truth: every documented enum value is accepted, undocumented
//! methods answer 405 with `Allow`, and what schemathesis checks in CI (`.ci/schemathesis.sh`)
//! holds for the basics without Python.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use actix_web::test::{TestRequest, call_service};
use chrono::{TimeZone, Utc};
use serde_json::Value;
use usage_core::ProviderError;
use usage_gateway::config::ServerConfig;
use usage_gateway::error::{ApiError, ParamError, Problem};
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
        query::parse(
            q,
            &limits,
            &usage_gateway::registry::Registry::builtin(),
            now,
        )
        .unwrap_or_else(|e| panic!("{q}: {e:?}"));
    };
    // `tz` is a string with examples, not an enum (see openapi_drift.rs); the examples are zones.
    let zones = doc["components"]["schemas"]["TimeZone"]["examples"]
        .as_array()
        .unwrap();
    assert!(zones.len() >= 3, "{zones:?}");
    for tz in zones {
        accepted(&serde_urlencoded::to_string([("tz", tz.as_str().unwrap())]).unwrap());
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

/// The examples of one media type object: `example` and every `examples.*.value`, by name.
fn examples_of(media: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    if let Some(e) = media.get("example") {
        out.push(("example".to_owned(), e));
    }
    for (name, e) in media
        .get("examples")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        out.push((name.clone(), &e["value"]));
    }
    out
}

/// Checks `value` against `schema` of `doc`: `$ref`, `oneOf`, `type`, `enum`, `required`,
/// `properties` (no undocumented field), `additionalProperties` and `items`.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        return conforms(doc, &doc["components"]["schemas"][name], value, at);
    }
    if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
        let fits = alts
            .iter()
            .filter(|s| conforms(doc, s, value, at).is_ok())
            .count();
        return if fits == 1 {
            Ok(())
        } else {
            Err(format!("{at}: {value} fits {fits} of oneOf {schema}"))
        };
    }
    if let Some(ty) = schema.get("type") {
        let types: Vec<&str> = match ty {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
            _ => panic!("{at}: type {ty}"),
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let ok = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !ok {
            return Err(format!("{at}: {value} is {actual}, not {types:?}"));
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        return Err(format!("{at}: {value} not in {values:?}"));
    }
    if let Value::Object(obj) = value {
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = key.as_str().unwrap();
            if !obj.contains_key(key) {
                return Err(format!("{at}: required `{key}` missing"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        let extra = schema.get("additionalProperties");
        for (k, v) in obj {
            let at = format!("{at}.{k}");
            match (props.and_then(|p| p.get(k)), extra) {
                (Some(s), _) | (None, Some(s @ Value::Object(_))) => conforms(doc, s, v, &at)?,
                (None, _) if props.is_some() => return Err(format!("{at}: undocumented field")),
                (None, _) => {}
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            conforms(doc, s, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// `(type, title)` pairs per HTTP status.
type StatusKinds = BTreeMap<u16, BTreeSet<(String, String)>>;

/// The `(type, title)` pairs the gateway renders per HTTP status (error.rs), and the
/// `(type, title, status)` triples of source problems (`Problem::from_provider`).
fn real_problems() -> (StatusKinds, BTreeSet<(String, String, u64)>) {
    let s = || "src".to_owned();
    let m = || "m".to_owned();
    let mut top = StatusKinds::new();
    for e in [
        ApiError::BadRequest(vec![ParamError::new("tz", "bad")]),
        ApiError::Unauthorized,
        ApiError::Forbidden("no".into()),
        ApiError::NotFound,
        ApiError::MethodNotAllowed,
        ApiError::PayloadTooLarge("big".into()),
        ApiError::HeadersTooLarge("many".into()),
        ApiError::AllSourcesFailed {
            status: 502,
            sources: Vec::new(),
        },
        ApiError::AllSourcesFailed {
            status: 504,
            sources: Vec::new(),
        },
        ApiError::Internal("bug".into()),
    ] {
        let p = e.problem();
        top.entry(p.status).or_default().insert((p.kind, p.title));
    }
    let nested = [
        ProviderError::Unauthenticated {
            source_name: s(),
            message: m(),
        },
        ProviderError::Forbidden {
            source_name: s(),
            message: m(),
        },
        ProviderError::NotFound {
            source_name: s(),
            message: m(),
            hint: None,
        },
        ProviderError::RateLimited {
            source_name: s(),
            retry_after: None,
        },
        ProviderError::QuotaExceeded {
            source_name: s(),
            message: m(),
        },
        ProviderError::Upstream {
            source_name: s(),
            status: 503,
            message: m(),
        },
        ProviderError::Transport {
            source_name: s(),
            message: m(),
        },
        ProviderError::Timeout {
            source_name: s(),
            elapsed: Duration::from_secs(1),
        },
        ProviderError::Decode {
            source_name: s(),
            message: m(),
        },
        ProviderError::InvalidQuery {
            source_name: s(),
            message: m(),
        },
        ProviderError::CircuitOpen {
            source_name: s(),
            retry_after: Duration::from_secs(1),
        },
        ProviderError::Config {
            source_name: s(),
            message: m(),
        },
    ]
    .iter()
    .map(|e| {
        let p = Problem::from_provider(e);
        (p.kind, p.title, u64::from(p.status))
    })
    .collect();
    (top, nested)
}

/// Every problem object nested in `value` (`sources[].error`, `last_error`), with its path.
fn nested_problems<'a>(value: &'a Value, at: &str, out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj {
                let at = format!("{at}.{k}");
                if (k == "error" || k == "last_error") && v.is_object() {
                    out.push((at.clone(), v));
                }
                nested_problems(v, &at, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                nested_problems(v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Every operation's every JSON response shows an example, every example fits its schema, and
/// every problem example is a body the gateway really sends: `status` equal to the response
/// code, the `type`/`title` error.rs renders for that status and `instance` =
/// `urn:request-id:<id>`; problems inside `sources[]` are ones `Problem::from_provider` makes.
#[test]
fn every_json_response_has_examples_true_to_the_gateway() {
    let doc = document();
    let (top, nested) = real_problems();
    let mut problem_examples = 0;
    let mut responses = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (code, resp) in op["responses"].as_object().unwrap() {
                for (media, mt) in resp
                    .get("content")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    if !media.ends_with("json") {
                        continue;
                    }
                    responses += 1;
                    let examples = examples_of(mt);
                    assert!(
                        !examples.is_empty(),
                        "{method} {path} {code} {media} has no example"
                    );
                    for (name, ex) in examples {
                        let at = format!("{method} {path} {code} {media} `{name}`");
                        conforms(&doc, &mt["schema"], ex, &at).unwrap();
                        let mut inner = Vec::new();
                        nested_problems(ex, &at, &mut inner);
                        for (at, p) in inner {
                            let triple = (
                                p["type"].as_str().unwrap().to_owned(),
                                p["title"].as_str().unwrap().to_owned(),
                                p["status"].as_u64().unwrap(),
                            );
                            assert!(nested.contains(&triple), "{at}: {triple:?} is not real");
                            assert!(p.get("instance").is_none(), "{at}: nested instance");
                        }
                        if media != "application/problem+json" {
                            continue;
                        }
                        problem_examples += 1;
                        let status: u16 = code.parse().unwrap();
                        assert_eq!(ex["status"], u64::from(status), "{at}");
                        let pair = (
                            ex["type"].as_str().unwrap().to_owned(),
                            ex["title"].as_str().unwrap().to_owned(),
                        );
                        assert!(
                            top.get(&status).is_some_and(|p| p.contains(&pair)),
                            "{at}: {pair:?} is not what the gateway answers with {status}"
                        );
                        let instance = ex["instance"].as_str().unwrap_or_default();
                        let id = instance.strip_prefix("urn:request-id:").unwrap_or_default();
                        assert!(!id.is_empty(), "{at}: instance `{instance}`");
                        if status == 400 {
                            assert!(!ex["errors"].as_array().unwrap().is_empty(), "{at}");
                            assert!(
                                ex["detail"]
                                    .as_str()
                                    .unwrap()
                                    .contains(ex["errors"][0]["parameter"].as_str().unwrap())
                            );
                        }
                        if status == 502 || status == 504 {
                            assert!(!ex["sources"].as_array().unwrap().is_empty(), "{at}");
                        }
                    }
                }
            }
        }
    }
    assert!(responses >= 30, "{responses}");
    assert!(problem_examples >= 25, "{problem_examples}");
}
