//! Tenant isolation (OWASP API1): callers with different access entries see only their sources
//! and agents on every route, naming anything else is 403 without an upstream call, and no
//! cached answer ever crosses to a caller with other (narrower) access.

use serde_json::Value;

use crate::common::{Harness, RANGE, app, get, harness, json_of, team_token, token};

fn strings(v: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x[key].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn calls(h: &Harness) -> (u64, u64) {
    (h.alpha.calls(), h.beta.calls())
}

#[actix_web::test]
async fn each_tenant_sees_only_its_sources_and_agents_on_every_route() {
    let h = harness("2s");
    let app = app(&h).await;
    for (tenant, tok, source, agents) in [
        ("cx", team_token("cx"), "alpha", vec!["a1", "a2"]),
        ("ops", team_token("ops"), "beta", vec!["b1"]),
        ("cx-narrow", team_token("cx-narrow"), "alpha", vec!["a1"]),
    ] {
        let (s, _, body) = get(
            &app,
            &format!("/v1/usage?{RANGE}&group_by=source,agent,provider,user&bucket=day"),
            Some(&tok),
            &[],
        )
        .await;
        assert_eq!(s, 200, "{tenant}");
        let v = json_of(&body);
        assert_eq!(strings(&v["sources"], "source"), [source], "{tenant}");
        assert_eq!(strings(&v["rows"], "source"), [source], "{tenant}");
        assert_eq!(strings(&v["rows"], "agent"), agents, "{tenant}");
        let (_, _, body) = get(&app, "/v1/agents", Some(&tok), &[]).await;
        let v = json_of(&body);
        assert_eq!(strings(&v["agents"], "source"), [source], "{tenant}");
        assert_eq!(strings(&v["agents"], "agent"), agents, "{tenant}");
        let (_, _, body) = get(&app, "/v1/sources", Some(&tok), &[]).await;
        assert_eq!(
            strings(&json_of(&body)["sources"], "source"),
            [source],
            "{tenant}"
        );
    }
    // A provider filter matching only another tenant's source touches nothing.
    let before = calls(&h);
    let (s, _, body) = get(
        &app,
        &format!("/v1/usage?{RANGE}&provider=kibana"),
        Some(&team_token("cx")),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let v = json_of(&body);
    assert!(v["sources"].as_array().unwrap().is_empty(), "{v}");
    assert!(v["rows"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(calls(&h), before);
}

#[actix_web::test]
async fn naming_anything_outside_the_access_is_403_before_any_upstream_call() {
    let h = harness("2s");
    let app = app(&h).await;
    let cx = team_token("cx");
    let ops = team_token("ops");
    let narrow = team_token("cx-narrow");
    for (tenant, tok, query) in [
        ("cx", &cx, "source=beta"),
        ("cx", &cx, "source=alpha,beta"),
        ("cx", &cx, "agent=beta/b1"),
        ("cx", &cx, "agent=alpha/a1&agent=beta/b1"),
        ("ops", &ops, "source=alpha"),
        ("ops", &ops, "agent=alpha/a1"),
        ("cx-narrow", &narrow, "agent=alpha/a2"),
        // A bare id is checked against agent-limited access; with whole sources it only
        // filters those sources (it cannot name another tenant's data).
        ("cx-narrow", &narrow, "agent=a2"),
        // An unknown name is 403 too for a caller who cannot see every source, so that
        // 400-vs-403 never tells which sources exist beyond its access.
        ("cx", &cx, "source=no-such-source"),
        ("cx", &cx, "agent=no-such-source/x"),
        ("ops", &ops, "source=alpha,no-such-source"),
    ] {
        let before = calls(&h);
        let (s, headers, body) =
            get(&app, &format!("/v1/usage?{RANGE}&{query}"), Some(tok), &[]).await;
        assert_eq!(
            s,
            403,
            "{tenant} {query}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/problem+json"
        );
        assert_eq!(calls(&h), before, "{tenant} {query} fetched");
    }
    assert_eq!(calls(&h), (0, 0));
    // A caller who sees every source learns nothing new: an unknown name is a 400 naming it.
    let (s, _, body) = get(
        &app,
        &format!("/v1/usage?{RANGE}&source=no-such-source"),
        Some(&token("admin")),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body)["errors"][0]["parameter"], "source");
    assert_eq!(calls(&h), (0, 0));
}

#[actix_web::test]
async fn cached_answers_never_reach_a_caller_with_narrower_access() {
    let h = harness("2s");
    let app = app(&h).await;
    let admin = token("admin");
    let queries = [
        format!("/v1/usage?{RANGE}"),
        format!("/v1/usage?{RANGE}&bucket=day&group_by=agent,user"),
        format!("/v1/usage?{RANGE}&group_by="),
        format!("/v1/usage?{RANGE}&format=csv"),
        format!("/v1/usage?{RANGE}&agent=a1,a2,b1"),
    ];
    // The widest caller warms every cache first.
    let mut wide = Vec::new();
    for q in &queries {
        let (s, headers, body) = get(&app, q, Some(&admin), &[]).await;
        assert_eq!(s, 200, "{q}");
        wide.push((
            headers.get("etag").unwrap().to_str().unwrap().to_owned(),
            body,
        ));
    }
    let (_, _, agents_wide) = get(&app, "/v1/agents", Some(&admin), &[]).await;

    for (tenant, tok, total) in [
        ("cx-narrow", team_token("cx-narrow"), 1440),
        ("cx", team_token("cx"), 1632),
        ("ops", team_token("ops"), 400),
    ] {
        for (q, (etag, wide_body)) in queries.iter().zip(&wide) {
            // Even with the wider answer's ETag the narrower caller gets its own answer, not a 304.
            let (s, _, body) = get(&app, q, Some(&tok), &[("If-None-Match", etag)]).await;
            assert_ne!(&body, wide_body, "{tenant} {q} got the wide answer");
            if tenant == "cx-narrow" && q.contains("agent=") {
                assert_eq!(s, 403, "a2 and b1 are outside cx-narrow's access");
                continue;
            }
            assert_eq!(s, 200, "{tenant} {q}");
            if q.contains("format=csv") {
                let text = String::from_utf8(body).unwrap();
                let total_col: u64 = text
                    .lines()
                    .skip(1)
                    .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
                    .sum();
                assert_eq!(total_col, total, "{tenant} {q}");
            } else {
                assert_eq!(
                    json_of(&body)["totals"][0]["total_tokens"],
                    total,
                    "{tenant} {q}"
                );
            }
        }
        let (_, _, agents) = get(&app, "/v1/agents", Some(&tok), &[]).await;
        assert_ne!(agents, agents_wide, "{tenant}");
    }
    // And the other way round: a narrow caller first never narrows the wide caller's answer.
    let h2 = harness("2s");
    let app2 = crate::common::app(&h2).await;
    let q = format!("/v1/usage?{RANGE}");
    let (_, _, narrow) = get(&app2, &q, Some(&team_token("cx-narrow")), &[]).await;
    let (_, _, full) = get(&app2, &q, Some(&admin), &[]).await;
    assert_eq!(json_of(&narrow)["totals"][0]["total_tokens"], 1440);
    assert_eq!(json_of(&full)["totals"][0]["total_tokens"], 2032);
}
