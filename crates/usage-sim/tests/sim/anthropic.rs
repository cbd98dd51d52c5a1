//! Anthropic simulator: CONTRACTS-openai-anthropic.md part B (and part D's guidance).

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::Value;
use usage_core::{Counters, Unit, Window};
use usage_sim::{
    ANTHROPIC_ADMIN_KEY, ANTHROPIC_FRESHNESS, AnthropicOptions, Dataset, SimHandle, TruthFilter,
    start_anthropic_with,
};

use crate::common::{client, data, now, send};

async fn sim(limit: u32) -> (Arc<Dataset>, SimHandle) {
    let d = data();
    let h = start_anthropic_with(
        d.clone(),
        AnthropicOptions {
            rate_limit_per_minute: limit,
            ..usage_sim::AnthropicOptions::default()
        },
        None,
    )
    .await
    .unwrap();
    (d, h)
}

async fn get(sim: &SimHandle, query: &[(&str, &str)], key: Option<&str>) -> (u16, Value) {
    let mut r = client()
        .get(format!(
            "{}/v1/organizations/usage_report/messages",
            sim.base_url
        ))
        .query(query)
        .header("anthropic-version", "2023-06-01");
    if let Some(k) = key {
        r = r.header("x-api-key", k);
    }
    let (s, _, v) = send(r).await;
    (s, v)
}

async fn usage(sim: &SimHandle, query: &[(&str, &str)]) -> (u16, Value) {
    get(sim, query, Some(ANTHROPIC_ADMIN_KEY)).await
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Sums every row of a page the way the contract's part C maps it.
fn fold(v: &Value) -> (Counters, u64) {
    let mut c = Counters::default();
    let mut searches = 0;
    for b in v["data"].as_array().unwrap() {
        for r in b["results"].as_array().unwrap() {
            let n = |p: &str| r.pointer(p).and_then(Value::as_u64).unwrap();
            c.input += n("/uncached_input_tokens");
            c.output += n("/output_tokens");
            c.other += n("/cache_read_input_tokens")
                + n("/cache_creation/ephemeral_5m_input_tokens")
                + n("/cache_creation/ephemeral_1h_input_tokens");
            searches += n("/server_tool_use/web_search_requests");
        }
    }
    (c, searches)
}

fn truth(d: &Dataset, f: &TruthFilter, w: Window) -> (Counters, u64) {
    let t = d.anthropic.truth(f, w);
    (
        t.get(&Unit::Tokens).copied().unwrap_or_default(),
        t.get(&Unit::Requests).map_or(0, |c| c.other),
    )
}

#[tokio::test]
async fn data_has_every_kind_of_usage() {
    let d = data();
    let an = &d.anthropic;
    assert_eq!(an.workspaces().len(), 4);
    assert_eq!(
        an.workspaces()
            .iter()
            .filter(|w| w.archived_at.is_some())
            .count(),
        1
    );
    assert!(an.events().iter().any(|e| e.workspace_id.is_none()));
    assert!(an.events().iter().any(|e| e.api_key_id.is_none()));
    for ty in usage_sim::ANTHROPIC_USAGE_TYPES {
        assert!(an.events().iter().any(|e| e.quantity(ty) > 0), "{ty}");
    }
    let models: std::collections::BTreeSet<&str> =
        an.events().iter().map(|e| e.model.as_str()).collect();
    assert_eq!(models.len(), 4);
}

#[tokio::test]
async fn daily_buckets_with_empty_ones_sum_to_truth() {
    let (d, sim) = sim(0).await;
    let (s, v) = usage(
        &sim,
        &[
            ("starting_at", "2026-02-01T07:30:00Z"),
            ("ending_at", "2026-02-11T00:00:00Z"),
            ("limit", "31"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 10, "snapped to 02-01, ends at 02-11");
    assert_eq!(data[0]["starting_at"], "2026-02-01T00:00:00Z");
    assert_eq!(data[9]["ending_at"], "2026-02-11T00:00:00Z");
    assert_eq!(v["has_more"], false);
    assert!(v["next_page"].is_null());
    let w = Window::new(t("2026-02-01T00:00:00Z"), t("2026-02-11T00:00:00Z"));
    assert_eq!(fold(&v), truth(&d, &TruthFilter::default(), w));
    // Minute buckets are mostly empty, and listed anyway; every dimension key is present.
    let (_, v) = usage(
        &sim,
        &[
            ("starting_at", "2026-02-03T00:00:00Z"),
            ("bucket_width", "1m"),
            ("limit", "1440"),
            ("group_by[]", "model"),
        ],
    )
    .await;
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1440);
    assert!(
        data.iter()
            .any(|b| b["results"].as_array().unwrap().is_empty())
    );
    let row = data
        .iter()
        .find_map(|b| b["results"].as_array().unwrap().first())
        .unwrap();
    for k in ["workspace_id", "api_key_id", "service_tier", "account_id"] {
        assert!(row[k].is_null(), "{k}: {row}");
    }
    assert!(row["model"].is_string());
}

#[tokio::test]
async fn grouping_filters_and_both_array_spellings() {
    let (d, sim) = sim(0).await;
    let an = &d.anthropic;
    let w = Window::new(t("2026-01-01T00:00:00Z"), t("2026-02-01T00:00:00Z"));
    let base = [
        ("starting_at", "2026-01-01T00:00:00Z"),
        ("ending_at", "2026-02-01T00:00:00Z"),
        ("limit", "31"),
    ];
    let ws = an.workspaces()[0].id.as_str();
    for name in ["workspace_ids[]", "workspace_ids"] {
        let mut q = base.to_vec();
        q.push((name, ws));
        let (_, v) = usage(&sim, &q).await;
        assert_eq!(fold(&v), truth(&d, &TruthFilter::agent(ws), w), "{name}");
    }
    // Grouped by workspace: the default workspace's rows carry workspace_id null.
    let mut q = base.to_vec();
    q.push(("group_by", "workspace_id"));
    q.push(("group_by[]", "api_key_id"));
    let (_, v) = usage(&sim, &q).await;
    let rows: Vec<&Value> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["results"].as_array().unwrap())
        .collect();
    assert!(rows.iter().any(|r| r["workspace_id"].is_null()));
    assert!(
        rows.iter().any(|r| r["api_key_id"].is_null()),
        "Console usage"
    );
    assert!(
        rows.iter()
            .any(|r| r["workspace_id"].is_string() && r["api_key_id"].is_string())
    );
    assert_eq!(fold(&v), truth(&d, &TruthFilter::default(), w));
    let key = an.api_keys()[2].id.as_str();
    let model = "claude-opus-4-6";
    let mut q = base.to_vec();
    q.push(("api_key_ids[]", key));
    q.push(("models[]", model));
    let (_, v) = usage(&sim, &q).await;
    let f = TruthFilter {
        user: Some(key.to_owned()),
        model: Some(model.to_owned()),
        ..TruthFilter::default()
    };
    assert_eq!(fold(&v), truth(&d, &f, w));
}

#[tokio::test]
async fn pages_follow_next_page_and_reject_a_cursor_of_another_query() {
    let (d, sim) = sim(0).await;
    let q = [
        ("starting_at", "2026-01-01T00:00:00Z"),
        ("ending_at", "2026-01-03T00:00:00Z"),
        ("bucket_width", "1h"),
        ("limit", "20"),
        ("group_by[]", "model"),
    ];
    let mut pages = Vec::new();
    let (s, mut v) = usage(&sim, &q).await;
    assert_eq!(s, 200);
    loop {
        let next = v["next_page"].as_str().map(str::to_owned);
        pages.push(v);
        let Some(next) = next else { break };
        assert!(next.starts_with("page_"), "{next}");
        let mut q2 = q.to_vec();
        q2.push(("page", &next));
        let (s, nv) = usage(&sim, &q2).await;
        assert_eq!(s, 200, "{nv}");
        v = nv;
    }
    assert_eq!(pages.len(), 3, "20 + 20 + 8 hours");
    let buckets: usize = pages
        .iter()
        .map(|p| p["data"].as_array().unwrap().len())
        .sum();
    assert_eq!(buckets, 48);
    let total = pages.iter().fold((Counters::default(), 0), |mut acc, p| {
        let (c, s) = fold(p);
        acc.0.add(&c);
        acc.1 += s;
        acc
    });
    let w = Window::new(t("2026-01-01T00:00:00Z"), t("2026-01-03T00:00:00Z"));
    assert_eq!(total, truth(&d, &TruthFilter::default(), w));
    // The first page's cursor with another grouping.
    let cursor = pages[0]["next_page"].as_str().unwrap().to_owned();
    let (s, v) = usage(
        &sim,
        &[
            ("starting_at", "2026-01-01T00:00:00Z"),
            ("ending_at", "2026-01-03T00:00:00Z"),
            ("bucket_width", "1h"),
            ("group_by[]", "workspace_id"),
            ("page", &cursor),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn validation_and_auth_errors_use_the_envelope() {
    let (_, sim) = sim(0).await;
    let start = ("starting_at", "2026-01-01T00:00:00Z");
    for (q, status, kind) in [
        (vec![start, ("limit", "32")], 400, "invalid_request_error"),
        (
            vec![start, ("bucket_width", "1h"), ("limit", "169")],
            400,
            "invalid_request_error",
        ),
        (
            vec![start, ("bucket_width", "1m"), ("limit", "1441")],
            400,
            "invalid_request_error",
        ),
        (
            vec![start, ("bucket_width", "1w")],
            400,
            "invalid_request_error",
        ),
        (
            vec![start, ("group_by[]", "user")],
            400,
            "invalid_request_error",
        ),
        (vec![], 400, "invalid_request_error"),
    ] {
        let (s, v) = usage(&sim, &q).await;
        assert_eq!(
            (s, v["error"]["type"].as_str().unwrap()),
            (status, kind),
            "{q:?}"
        );
        assert_eq!(v["type"], "error");
        assert!(v["request_id"].as_str().unwrap().starts_with("req_"));
    }
    let (s, v) = get(&sim, &[start], Some("wrong")).await;
    assert_eq!(
        (s, v["error"]["type"].as_str().unwrap()),
        (401, "authentication_error")
    );
    let (s, v) = get(&sim, &[start], Some("sk-ant-api03-regular")).await;
    assert_eq!(
        (s, v["error"]["type"].as_str().unwrap()),
        (403, "permission_error")
    );
    let (s, _) = get(&sim, &[start], None).await;
    assert_eq!(s, 401);
    let (s, _, v) = send(
        client()
            .get(format!(
                "{}/v1/organizations/usage_report/messages",
                sim.base_url
            ))
            .query(&[start])
            .header("x-api-key", ANTHROPIC_ADMIN_KEY),
    )
    .await;
    assert_eq!(s, 400, "anthropic-version missing: {v}");
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_and_without_retry_after() {
    let (_, sim) = sim(2).await;
    let q = [("starting_at", "2026-01-01T00:00:00Z")];
    for _ in 0..2 {
        assert_eq!(usage(&sim, &q).await.0, 200);
    }
    let r = client()
        .get(format!(
            "{}/v1/organizations/usage_report/messages",
            sim.base_url
        ))
        .query(&q)
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", ANTHROPIC_ADMIN_KEY);
    let (s, h, v) = send(r).await;
    assert_eq!(
        (s, v["error"]["type"].as_str().unwrap()),
        (429, "rate_limit_error")
    );
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    assert!(h.get("request-id").is_some());
    sim.faults().set_omit_retry_after(true);
    let r = client()
        .get(format!(
            "{}/v1/organizations/usage_report/messages",
            sim.base_url
        ))
        .query(&q)
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", ANTHROPIC_ADMIN_KEY);
    let (s, h, _) = send(r).await;
    assert_eq!(s, 429);
    assert!(h.get("retry-after").is_none());
    assert_eq!(sim.calls("anthropic.usage"), 4);
}

#[tokio::test]
async fn usage_shows_five_minutes_after_it_happened() {
    let (d, sim) = sim(0).await;
    let e = d.anthropic.events().last().unwrap().clone();
    let minute = e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let end = (e.at + Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let q = [
        ("starting_at", minute.as_str()),
        ("ending_at", end.as_str()),
        ("bucket_width", "1m"),
    ];
    let w = Window::new(e.at, e.at + Duration::minutes(1));
    let want = truth(&d, &TruthFilter::default(), w);
    assert!(want.0.total() > 0);
    sim.set_clock(Some(e.at + ANTHROPIC_FRESHNESS - Duration::seconds(1)));
    let (_, v) = usage(&sim, &q).await;
    assert_eq!(fold(&v), (Counters::default(), 0), "not yet");
    sim.set_clock(Some(e.at + ANTHROPIC_FRESHNESS));
    let (_, v) = usage(&sim, &q).await;
    assert_eq!(fold(&v), want);
    // Without ending_at, buckets run to the one holding the clock.
    sim.set_clock(Some(Utc.with_ymd_and_hms(2026, 1, 1, 2, 30, 0).unwrap()));
    let (_, v) = usage(
        &sim,
        &[
            ("starting_at", "2026-01-01T00:00:00Z"),
            ("bucket_width", "1h"),
        ],
    )
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert!(now() > e.at);
}

#[tokio::test]
async fn workspaces_page_with_after_id_and_hide_archived_by_default() {
    let (d, sim) = sim(0).await;
    let list = |q: Vec<(&'static str, String)>| {
        let r = client()
            .get(format!("{}/v1/organizations/workspaces", sim.base_url))
            .query(&q)
            .header("anthropic-version", "2023-06-01")
            .header("x-api-key", ANTHROPIC_ADMIN_KEY);
        send(r)
    };
    let (s, _, v) = list(vec![]).await;
    assert_eq!(s, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), 3, "archived hidden");
    let (_, _, v) = list(vec![
        ("include_archived", "true".into()),
        ("limit", "3".into()),
    ])
    .await;
    assert_eq!(v["has_more"], true);
    let after = v["last_id"].as_str().unwrap().to_owned();
    let (_, _, v) = list(vec![
        ("include_archived", "true".into()),
        ("limit", "3".into()),
        ("after_id", after),
    ])
    .await;
    assert_eq!(v["has_more"], false);
    let w = &v["data"][0];
    assert_eq!(w["id"], d.anthropic.workspaces()[3].id.as_str());
    assert!(w["archived_at"].is_string());
    assert_eq!(w["type"], "workspace");
    assert_eq!(sim.calls("anthropic.workspaces"), 3);
}
