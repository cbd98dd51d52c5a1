//! `/v1/*` behaviour: happy path, errors, auth, access, caching, deadlines, CSV.

use std::time::{Duration, Instant};

use actix_web::test;
use serde_json::{Value, json};
use usage_core::ProviderError;

use crate::common::{RANGE, app, claims, get, harness, json_of, team_token, token, token_with};

#[actix_web::test]
async fn happy_path_two_sources() {
    let h = harness("2s");
    let app = app(&h).await;
    let (status, headers, body) = get(
        &app,
        &format!("/v1/usage?{RANGE}"),
        Some(&token("admin")),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    let v = json_of(&body);
    assert_eq!(v["complete"], true);
    assert_eq!(
        v["query"],
        json!({"start": "2026-10-01T00:00:00Z", "end": "2026-10-05T00:00:00Z", "tz": "UTC", "bucket": "none", "group_by": ["source", "agent"], "filters": {}, "fill": "none", "bucket_edges": "utc"})
    );
    assert_eq!(
        v["totals"],
        json!([{"unit": "tokens", "input_tokens": 1456, "output_tokens": 576, "other_tokens": 0, "total_tokens": 2032}])
    );
    assert_eq!(
        v["rows"],
        json!([
            {"source": "alpha", "agent": "a1", "agent_name": "Support", "unit": "tokens", "input_tokens": 960, "output_tokens": 480, "other_tokens": 0, "total_tokens": 1440},
            {"source": "alpha", "agent": "a2", "agent_name": "Sales", "unit": "tokens", "input_tokens": 96, "output_tokens": 96, "other_tokens": 0, "total_tokens": 192},
            {"source": "beta", "agent": "b1", "agent_name": "Ops", "unit": "tokens", "input_tokens": 400, "output_tokens": 0, "other_tokens": 0, "total_tokens": 400},
        ])
    );
    let sources = v["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0]["source"], "alpha");
    assert_eq!(sources[0]["provider"], "digitalocean");
    assert_eq!(sources[0]["status"], "ok");
    assert_eq!(sources[0]["attribution"], "exact");
    assert_eq!(sources[0]["cached"], false);
    assert_eq!(sources[0]["upstream_requests"], 1);
    assert!(sources[0]["fetched_at"].is_string());
    assert!(sources[0]["duration_ms"].is_number());
}

#[actix_web::test]
async fn buckets_and_dimensions_keep_totals() {
    let h = harness("2s");
    let app = app(&h).await;
    let t = token("admin");
    let (s, _, body) = get(
        &app,
        &format!("/v1/usage?{RANGE}&bucket=day&group_by=user,provider&tz=Europe/Berlin"),
        Some(&t),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let v = json_of(&body);
    assert_eq!(v["totals"][0]["total_tokens"], 2032);
    let rows = v["rows"].as_array().unwrap();
    // Berlin is UTC+2 in early October: the first local day starts at the range start (clipped).
    assert_eq!(rows[0]["bucket_start"], "2026-10-01T00:00:00Z");
    assert_eq!(rows[0]["bucket_end"], "2026-10-01T22:00:00Z");
    // beta has no user dimension: its rows carry null there.
    assert!(
        rows.iter()
            .any(|r| r["user"].is_null() && r["provider"] == "kibana")
    );
    let sum: u64 = rows
        .iter()
        .map(|r| r["total_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, 2032);
    for r in rows {
        assert!(r.get("agent").is_none() && r.get("source").is_none());
    }
    // Totals only.
    let (_, _, body) = get(&app, &format!("/v1/usage?{RANGE}&group_by="), Some(&t), &[]).await;
    let v = json_of(&body);
    assert_eq!(v["rows"].as_array().unwrap().len(), 1);
    assert_eq!(v["rows"][0]["total_tokens"], 2032);
}

#[actix_web::test]
async fn every_bad_parameter_is_a_400_naming_it() {
    let h = harness("2s");
    let app = app(&h).await;
    let t = token("admin");
    for (query, param) in [
        ("group_by=team", "group_by"),
        ("tz=Nowhere/City", "tz"),
        ("start=2026-10-05&end=2026-10-01", "end"),
        ("start=2026-01-01&end=2026-10-01", "end"),
        ("start=2026-09-01&end=2026-10-01&bucket=hour", "bucket"),
        ("source=nope", "source"),
        ("agent=nope/x", "agent"),
        ("bucket=fortnight", "bucket"),
        ("format=xml", "format"),
        ("provider=aws", "provider"),
        ("colour=blue", "colour"),
    ] {
        let (s, headers, body) = get(&app, &format!("/v1/usage?{query}"), Some(&t), &[]).await;
        assert_eq!(s, 400, "{query}");
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/problem+json"
        );
        let v = json_of(&body);
        assert_eq!(v["status"], 400);
        assert!(v["type"].as_str().unwrap().ends_with("invalid_parameter"));
        let names: Vec<&str> = v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["parameter"].as_str().unwrap())
            .collect();
        assert!(names.contains(&param), "{query}: {names:?}");
    }
    assert_eq!(
        h.alpha.calls() + h.beta.calls(),
        0,
        "no upstream call on 400"
    );
}

#[actix_web::test]
async fn auth_failures_are_401_and_reveal_nothing() {
    let h = harness("2s");
    let app = app(&h).await;
    let now = chrono::Utc::now().timestamp();
    let mut expired = claims("admin");
    expired["exp"] = json!(now - 3600);
    let mut wrong_aud = claims("admin");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("admin");
    wrong_iss["iss"] = json!("https://evil.test");
    let mut no_exp = claims("admin");
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut future_nbf = claims("admin");
    future_nbf["nbf"] = json!(now + 3600);
    let other_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims("admin"),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-1234"),
    )
    .unwrap();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("garbage", Some("not.a.jwt".into())),
        ("expired", Some(token_with(expired))),
        ("wrong aud", Some(token_with(wrong_aud))),
        ("wrong iss", Some(token_with(wrong_iss))),
        ("no exp", Some(token_with(no_exp))),
        ("nbf in future", Some(token_with(future_nbf))),
        ("other key", Some(other_key)),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&claims("admin").to_string())
            )),
        ),
    ];
    for (name, tok) in cases {
        let (s, headers, body) = get(&app, "/v1/usage", tok.as_deref(), &[]).await;
        assert_eq!(s, 401, "{name}");
        assert_eq!(
            headers.get("www-authenticate").unwrap(),
            "Bearer error=\"invalid_token\"",
            "{name}"
        );
        let v = json_of(&body);
        assert_eq!(v["detail"], "A valid bearer token is required.", "{name}");
    }
    assert_eq!(h.alpha.calls(), 0);
}

fn b64(s: &str) -> String {
    use std::fmt::Write;
    // URL-safe base64 without padding, written out to avoid a test-only dependency.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            let _ = write!(out, "{}", T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[actix_web::test]
async fn scope_and_access_are_enforced_before_any_fetch() {
    let h = harness("2s");
    let app = app(&h).await;
    let mut no_scope = claims("admin");
    no_scope["scope"] = json!("usage:write");
    let (s, _, _) = get(&app, "/v1/usage", Some(&token_with(no_scope)), &[]).await;
    assert_eq!(s, 403);
    let mut scp = claims("admin");
    scp.as_object_mut().unwrap().remove("scope");
    scp["scp"] = json!(["usage:read"]);
    let (s, _, _) = get(
        &app,
        &format!("/v1/usage?{RANGE}"),
        Some(&token_with(scp)),
        &[],
    )
    .await;
    assert_eq!(s, 200, "scp array grants the scope");
    h.alpha.set_failure(None);
    let before = (h.alpha.calls(), h.beta.calls());
    // Unknown caller: deny by default.
    let (s, _, _) = get(&app, "/v1/usage", Some(&token("stranger")), &[]).await;
    assert_eq!(s, 403);
    // Team cx sees alpha only; naming beta is 403 and fetches nothing.
    let cx = team_token("cx");
    let (s, _, body) = get(
        &app,
        &format!("/v1/usage?{RANGE}&source=beta"),
        Some(&cx),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{}", String::from_utf8_lossy(&body));
    let (s, _, body) = get(
        &app,
        &format!("/v1/usage?{RANGE}&agent=beta/b1"),
        Some(&cx),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{}", String::from_utf8_lossy(&body));
    assert_eq!((h.alpha.calls(), h.beta.calls()), before);
    let (s, _, body) = get(&app, &format!("/v1/usage?{RANGE}"), Some(&cx), &[]).await;
    assert_eq!(s, 200);
    let v = json_of(&body);
    assert_eq!(v["sources"].as_array().unwrap().len(), 1);
    assert_eq!(v["totals"][0]["total_tokens"], 1632);
    // Narrow team: only agent a1, also from a warm cache of the wider caller.
    let narrow = team_token("cx-narrow");
    let (s, _, body) = get(&app, &format!("/v1/usage?{RANGE}"), Some(&narrow), &[]).await;
    assert_eq!(s, 200);
    let v = json_of(&body);
    assert_eq!(v["totals"][0]["total_tokens"], 1440);
    assert!(
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["agent"] == "a1")
    );
    let (s, _, _) = get(
        &app,
        &format!("/v1/usage?{RANGE}&agent=alpha/a2"),
        Some(&narrow),
        &[],
    )
    .await;
    assert_eq!(s, 403);
    // /v1/sources and /v1/agents are scoped too.
    let (_, _, body) = get(&app, "/v1/sources", Some(&narrow), &[]).await;
    let v = json_of(&body);
    assert_eq!(v["sources"].as_array().unwrap().len(), 1);
    let (_, _, body) = get(&app, "/v1/agents", Some(&narrow), &[]).await;
    let v = json_of(&body);
    assert_eq!(
        v["agents"],
        json!([{"source": "alpha", "provider": "digitalocean", "agent": "a1", "agent_name": "Support"}])
    );
}

#[actix_web::test]
async fn etag_304_and_no_cache() {
    let h = harness("2s");
    let app = app(&h).await;
    let t = token("admin");
    let uri = format!("/v1/usage?{RANGE}");
    let (s, headers, body1) = get(&app, &uri, Some(&t), &[]).await;
    assert_eq!(s, 200);
    let etag = headers.get("etag").unwrap().to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    let cc = headers.get("cache-control").unwrap().to_str().unwrap();
    assert!(cc.starts_with("private, max-age="), "{cc}");
    let (s, _, body) = get(&app, &uri, Some(&t), &[("If-None-Match", &etag)]).await;
    assert_eq!(s, 304);
    assert!(body.is_empty());
    let (s, _, body2) = get(&app, &uri, Some(&t), &[]).await;
    assert_eq!(s, 200);
    assert_eq!(body1, body2, "a repeated query gives a byte-equal body");
    assert_eq!(h.alpha.calls(), 1);
    let (s, _, body3) = get(&app, &uri, Some(&t), &[("Cache-Control", "no-cache")]).await;
    assert_eq!(s, 200);
    assert_eq!(h.alpha.calls(), 2, "no-cache refetches");
    assert_eq!(json_of(&body3)["totals"], json_of(&body1)["totals"]);
    // Different grouping of cached windows: no new upstream call for the same shape.
    let (_, _, body) = get(&app, &format!("{uri}&format=json"), Some(&t), &[]).await;
    assert_eq!(json_of(&body)["sources"][0]["cached"], true);
    assert_eq!(h.alpha.calls(), 2);
}

#[actix_web::test]
async fn sequential_no_cache_requests_each_refetch_and_concurrent_ones_coalesce() {
    let h = harness("5s");
    let app = app(&h).await;
    let t = token("admin");
    let uri = format!("/v1/usage?{RANGE}&bucket=day");
    let no_cache = [("Cache-Control", "no-cache")];
    // Back to back (well within a second): a finished refresh is never joined by the next one.
    for n in 1..=2 {
        let (s, _, body) = get(&app, &uri, Some(&t), &no_cache).await;
        assert_eq!(s, 200);
        assert_eq!(h.alpha.calls(), n, "no-cache request {n} asks the vendor");
        assert_eq!(h.beta.calls(), n, "no-cache request {n} asks the vendor");
        assert_eq!(json_of(&body)["sources"][0]["cached"], false);
    }
    // Concurrent identical refreshes still share one call per source.
    h.alpha.set_latency(Duration::from_millis(100));
    h.beta.set_latency(Duration::from_millis(100));
    let results =
        futures::future::join_all((0..20).map(|_| get(&app, &uri, Some(&t), &no_cache))).await;
    assert!(results.iter().all(|(s, _, _)| *s == 200));
    assert_eq!((h.alpha.calls(), h.beta.calls()), (3, 3));
}

#[actix_web::test]
async fn one_failing_source_is_data_all_failing_is_502() {
    let h = harness("2s");
    let app = app(&h).await;
    let t = token("admin");
    h.beta.set_failure(Some(ProviderError::Upstream {
        source_name: "beta".into(),
        status: 503,
        message: "down".into(),
    }));
    let (s, headers, body) = get(&app, &format!("/v1/usage?{RANGE}"), Some(&t), &[]).await;
    assert_eq!(s, 200);
    assert_eq!(headers.get("x-usage-complete").unwrap(), "false");
    let v = json_of(&body);
    assert_eq!(v["complete"], false);
    assert_eq!(v["totals"][0]["total_tokens"], 1632);
    let beta = &v["sources"][1];
    assert_eq!(beta["status"], "error");
    assert_eq!(beta["error"]["status"], 502);
    assert!(
        beta["error"]["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:usage-gateway:problem:")
    );
    // Health shows the failure.
    let (_, _, body) = get(&app, "/v1/sources", Some(&t), &[]).await;
    let v = json_of(&body);
    assert!(v["sources"][1]["last_error"].is_object());
    assert!(v["sources"][0]["last_success"].is_string());
    // All failing → 502 with the sources array.
    h.alpha.set_failure(Some(ProviderError::Transport {
        source_name: "alpha".into(),
        message: "refused".into(),
    }));
    let (s, headers, body) = get(
        &app,
        "/v1/usage?start=2026-10-02&end=2026-10-03",
        Some(&t),
        &[],
    )
    .await;
    assert_eq!(s, 502);
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    let v = json_of(&body);
    assert_eq!(v["sources"].as_array().unwrap().len(), 2);
}

#[actix_web::test]
async fn slow_source_times_out_near_the_deadline() {
    let h = harness("300ms");
    let app = app(&h).await;
    let t = token("admin");
    // beta hangs (an hour): the answer comes at the deadline, not after the source. The upper
    // bound leaves a second for a loaded machine (CI shares two cores with builds); it still
    // tells the deadline from the hour.
    h.beta.set_latency(Duration::from_secs(3600));
    let started = Instant::now();
    let (s, _, body) = get(&app, &format!("/v1/usage?{RANGE}"), Some(&t), &[]).await;
    let took = started.elapsed();
    assert_eq!(s, 200);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1300),
        "{took:?}"
    );
    let v = json_of(&body);
    assert_eq!(v["complete"], false);
    assert_eq!(v["sources"][1]["status"], "timeout");
    assert_eq!(v["sources"][0]["status"], "ok");
    // All timing out → 504.
    h.alpha.set_latency(Duration::from_secs(3600));
    let (s, _, _) = get(
        &app,
        "/v1/usage?start=2026-10-02&end=2026-10-03",
        Some(&t),
        &[],
    )
    .await;
    assert_eq!(s, 504);
}

#[actix_web::test]
async fn concurrent_identical_cold_requests_make_one_call_per_source() {
    let h = harness("5s");
    let app = app(&h).await;
    h.alpha.set_latency(Duration::from_millis(100));
    h.beta.set_latency(Duration::from_millis(100));
    let t = token("admin");
    let uri = format!("/v1/usage?{RANGE}&bucket=day");
    let reqs = (0..100).map(|_| get(&app, &uri, Some(&t), &[]));
    let results = futures::future::join_all(reqs).await;
    assert!(results.iter().all(|(s, _, _)| *s == 200));
    let first = &results[0].2;
    assert!(
        results
            .iter()
            .all(|(_, _, b)| json_of(b)["totals"] == json_of(first)["totals"])
    );
    assert_eq!(h.alpha.calls(), 1);
    assert_eq!(h.beta.calls(), 1);
}

#[actix_web::test]
async fn csv_matches_json_rows() {
    let h = harness("2s");
    let app = app(&h).await;
    let t = token("admin");
    let q = format!("/v1/usage?{RANGE}&bucket=day&group_by=source,agent,user");
    let (_, _, jbody) = get(&app, &q, Some(&t), &[]).await;
    let (s, headers, cbody) = get(&app, &q, Some(&t), &[("Accept", "text/csv")]).await;
    assert_eq!(s, 200);
    assert!(
        headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let (_, _, cbody2) = get(&app, &format!("{q}&format=csv"), Some(&t), &[]).await;
    assert_eq!(cbody, cbody2);
    let mut rdr = csv::Reader::from_reader(cbody.as_slice());
    let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(
        header,
        [
            "bucket_start",
            "bucket_end",
            "source",
            "agent",
            "agent_name",
            "user",
            "unit",
            "input_tokens",
            "output_tokens",
            "other_tokens",
            "total_tokens"
        ]
    );
    let json_rows = json_of(&jbody)["rows"].as_array().unwrap().clone();
    let csv_rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(csv_rows.len(), json_rows.len());
    for (c, j) in csv_rows.iter().zip(&json_rows) {
        for (i, name) in header.iter().enumerate() {
            let expected = match &j[name] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(c.get(i).unwrap(), expected, "{name}");
        }
    }
}

/// `GET /v1/usage.csv` is `GET /v1/usage?format=csv`: the same body, ETag, headers and cache
/// entry; a `format` asking for JSON there, and every bad parameter, is a 400 naming it.
#[actix_web::test]
async fn the_csv_operation_answers_what_format_csv_answers() {
    let h = harness("2s");
    let app = app(&h).await;
    let t = token("admin");
    let q = format!("{RANGE}&bucket=day&tz=Asia/Kolkata");
    let (s, headers, body) = get(&app, &format!("/v1/usage.csv?{q}"), Some(&t), &[]).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        headers.get("content-type").unwrap(),
        "text/csv; charset=utf-8"
    );
    assert!(body.starts_with(b"bucket_start,bucket_end,source,agent,agent_name,unit,"));
    assert_eq!(headers.get("x-usage-complete").unwrap(), "true");
    assert!(
        headers
            .get("cache-control")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("private, max-age=")
    );
    let etag = headers.get("etag").unwrap().clone();
    for uri in [
        format!("/v1/usage?{q}&format=csv"),
        format!("/v1/usage.csv?{q}&format=csv"),
    ] {
        let (s, again, same) = get(&app, &uri, Some(&t), &[]).await;
        assert_eq!((s, &same), (200, &body), "{uri}");
        assert_eq!(again.get("etag"), Some(&etag), "{uri}");
    }
    assert_eq!((h.alpha.calls(), h.beta.calls()), (1, 1), "no refetch");
    let (s, _, _) = get(
        &app,
        &format!("/v1/usage.csv?{q}"),
        Some(&t),
        &[("If-None-Match", etag.to_str().unwrap())],
    )
    .await;
    assert_eq!(s, 304);
    for (query, param) in [
        ("format=json", "format"),
        ("tz=Nowhere/City", "tz"),
        ("tz=GMT0x", "tz"),
        ("bucket=fortnight", "bucket"),
    ] {
        let (s, headers, body) = get(&app, &format!("/v1/usage.csv?{query}"), Some(&t), &[]).await;
        assert_eq!(s, 400, "{query}");
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/problem+json"
        );
        assert_eq!(json_of(&body)["errors"][0]["parameter"], param, "{query}");
    }
    let (s, headers, _) = get(&app, &format!("/v1/usage.csv?{q}"), None, &[]).await;
    assert_eq!(s, 401);
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/problem+json"
    );
}

#[actix_web::test]
async fn user_filter_skips_sources_without_users() {
    let h = harness("2s");
    let app = app(&h).await;
    let (s, _, body) = get(
        &app,
        &format!("/v1/usage?{RANGE}&user=alice&group_by=user"),
        Some(&token("admin")),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let v = json_of(&body);
    assert_eq!(v["sources"][1]["status"], "skipped");
    assert_eq!(v["complete"], false);
    assert_eq!(
        v["rows"],
        json!([{"user": "alice", "unit": "tokens", "input_tokens": 480, "output_tokens": 240, "other_tokens": 0, "total_tokens": 720}])
    );
    assert_eq!(h.beta.calls(), 0);
}

#[actix_web::test]
async fn unknown_routes_and_methods_are_problems() {
    let h = harness("2s");
    let app = app(&h).await;
    let (s, headers, _) = get(&app, "/v2/nothing", None, &[]).await;
    assert_eq!(s, 404);
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    let resp = test::call_service(
        &app,
        test::TestRequest::post().uri("/v1/usage").to_request(),
    )
    .await;
    assert_eq!(resp.status(), 405);
    let (s, _, body) = get(&app, "/healthz", None, &[]).await;
    assert_eq!((s, json_of(&body)["status"].as_str()), (200, Some("ok")));
    let (s, _, _) = get(&app, "/readyz", None, &[]).await;
    assert_eq!(s, 200);
}

#[actix_web::test]
async fn fan_out_is_concurrent() {
    let h = harness("5s");
    let app = app(&h).await;
    h.alpha.set_latency(Duration::from_millis(200));
    h.beta.set_latency(Duration::from_millis(200));
    let started = Instant::now();
    let (s, _, body) = get(
        &app,
        &format!("/v1/usage?{RANGE}"),
        Some(&token("admin")),
        &[],
    )
    .await;
    let took = started.elapsed();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let v = json_of(&body);
    assert_eq!(v["complete"], true);
    assert_eq!((h.alpha.calls(), h.beta.calls()), (1, 1));
    for source in v["sources"].as_array().unwrap() {
        assert!(source["duration_ms"].as_f64().unwrap() >= 200.0, "{source}");
    }
    // Sequential calls would take at least 400 ms.
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(350),
        "{took:?}"
    );
}

#[actix_web::test]
async fn closed_windows_live_closed_ttl_and_open_ones_open_ttl() {
    let text = crate::common::config_text("5s").replace(
        "open_ttl = \"30s\"\nclosed_ttl = \"1h\"\nsettle = \"10m\"",
        "open_ttl = \"1s\"\nclosed_ttl = \"1h\"\nsettle = \"0s\"",
    );
    assert!(text.contains("open_ttl = \"1s\""), "cache section replaced");
    let config = usage_gateway::config::Config::parse(&text, &|k| {
        (k == "SECRET").then(|| crate::common::SECRET.to_owned())
    })
    .unwrap();
    let alpha = std::sync::Arc::new(crate::common::alpha());
    let providers: Vec<usage_core::DynUsageProvider> =
        vec![alpha.clone(), std::sync::Arc::new(crate::common::beta())];
    let state =
        actix_web::web::Data::new(usage_gateway::state::AppState::new(config, providers).unwrap());
    let app = actix_web::test::init_service(
        actix_web::App::new()
            .configure(usage_gateway::app::configure(state, true))
            .default_service(actix_web::web::to(usage_gateway::app::not_found)),
    )
    .await;
    let t = token("admin");
    // Fully in the past: closed at once (settle 0s). From today to tomorrow: reaches now, open.
    let today = chrono::Utc::now().date_naive();
    let closed = format!("/v1/usage?{RANGE}&bucket=day");
    let open = format!(
        "/v1/usage?start={today}&end={}&bucket=hour",
        today + chrono::Duration::days(1)
    );
    for uri in [&closed, &open] {
        let (s, _, body) = get(&app, uri, Some(&t), &[]).await;
        assert_eq!(s, 200, "{uri}: {}", String::from_utf8_lossy(&body));
        assert_eq!(json_of(&body)["sources"][0]["cached"], false, "{uri}");
    }
    assert_eq!(alpha.calls(), 2);
    // Past open_ttl (also the rendered-response cache's lifetime), before closed_ttl.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, _, body) = get(&app, &closed, Some(&t), &[]).await;
    assert_eq!(s, 200);
    assert_eq!(alpha.calls(), 2, "a closed window lives closed_ttl");
    assert_eq!(
        json_of(&body)["sources"][0]["cached"],
        true,
        "answered from the window cache, not a replayed body"
    );
    let (s, _, body) = get(&app, &open, Some(&t), &[]).await;
    assert_eq!(s, 200);
    assert_eq!(alpha.calls(), 3, "an open window lives open_ttl");
    assert_eq!(json_of(&body)["sources"][0]["cached"], false);
}
