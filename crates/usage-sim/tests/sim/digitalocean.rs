//! DigitalOcean Gen-AI simulator: CONTRACTS.md §1.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use usage_core::{Counters, Window};
use usage_sim::{
    DO_TOKEN, Dataset, DoOptions, SimHandle, TruthFilter, ZERO_TIME, start_digitalocean,
};

use crate::common::{client, data, floor_sec, header, rfc3339_ms, send, windows};

async fn sim(limit: u32) -> (Arc<Dataset>, SimHandle) {
    let d = data();
    let h = start_digitalocean(
        d.clone(),
        DoOptions {
            rate_limit_per_minute: limit,
        },
        None,
    )
    .await
    .unwrap();
    (d, h)
}

async fn usage(sim: &SimHandle, uuid: &str, start: &str, stop: &str) -> (u16, Value) {
    let (s, _, v) = send(
        client()
            .get(format!("{}/v2/gen-ai/agents/{uuid}/usage", sim.base_url))
            .query(&[("start", start), ("stop", stop)])
            .bearer_auth(DO_TOKEN),
    )
    .await;
    (s, v)
}

/// Folds a usage response into counters the way CONTRACTS.md §1.3 maps types.
fn fold(v: &Value) -> Counters {
    let mut c = Counters::default();
    for m in v["usage"]["measurements"].as_array().unwrap() {
        let t = m["tokens"].as_u64().unwrap();
        match m["usage_type"].as_str().unwrap() {
            "INPUT" => c.input += t,
            "OUTPUT" => c.output += t,
            _ => c.other += t,
        }
    }
    if let Some(li) = v.get("log_insights_usage") {
        for m in li["measurements"].as_array().unwrap() {
            c.other += m["tokens"].as_u64().unwrap();
        }
    }
    c
}

#[tokio::test]
async fn agents_paging_uses_full_links_and_the_previous_spelling() {
    let (d, sim) = sim(250).await;
    let base = &sim.base_url;
    let c = client();
    // Default page size 20: everything fits, so `links` is omitted.
    let (s, _, v) = send(
        c.get(format!("{base}/v2/gen-ai/agents"))
            .bearer_auth(DO_TOKEN),
    )
    .await;
    assert_eq!(s, 200);
    assert!(v.get("links").is_none(), "{v}");
    assert_eq!(v["meta"], json!({"page": 1, "pages": 1, "total": 4}));
    // per_page above the maximum of 200 is clamped, still one page.
    let (_, _, v) = send(
        c.get(format!("{base}/v2/gen-ai/agents?per_page=500"))
            .bearer_auth(DO_TOKEN),
    )
    .await;
    assert_eq!(v["agents"].as_array().unwrap().len(), 4);
    assert!(v.get("links").is_none());

    let mut next = Some(format!("{base}/v2/gen-ai/agents?per_page=1"));
    let mut seen = Vec::new();
    let mut page = 0;
    while let Some(url) = next {
        page += 1;
        let (s, _, v) = send(c.get(&url).bearer_auth(DO_TOKEN)).await;
        assert_eq!(s, 200);
        assert_eq!(v["meta"], json!({"page": page, "pages": 4, "total": 4}));
        let pages = &v["links"]["pages"];
        assert!(pages.get("prev").is_none(), "Gen-AI spells it `previous`");
        if page == 1 {
            assert!(pages.get("first").is_none() && pages.get("previous").is_none());
        } else {
            assert_eq!(
                pages["first"],
                format!("{base}/v2/gen-ai/agents?page=1&per_page=1")
            );
            assert_eq!(
                pages["previous"],
                format!("{base}/v2/gen-ai/agents?page={}&per_page=1", page - 1)
            );
        }
        if page < 4 {
            assert_eq!(
                pages["last"],
                format!("{base}/v2/gen-ai/agents?page=4&per_page=1")
            );
        } else {
            assert!(pages.get("next").is_none() && pages.get("last").is_none());
        }
        for a in v["agents"].as_array().unwrap() {
            seen.push(a["uuid"].as_str().unwrap().to_owned());
        }
        next = pages.get("next").map(|n| n.as_str().unwrap().to_owned());
    }
    let want: Vec<String> = d
        .digitalocean
        .agents()
        .iter()
        .map(|a| a.uuid.clone())
        .collect();
    assert_eq!(seen, want);

    // only_deployed filters, and the links keep the filter.
    let deployed = d
        .digitalocean
        .agents()
        .iter()
        .filter(|a| a.deployed)
        .count();
    assert!(deployed < 4);
    let (_, _, v) = send(
        c.get(format!(
            "{base}/v2/gen-ai/agents?only_deployed=true&per_page=1"
        ))
        .bearer_auth(DO_TOKEN),
    )
    .await;
    assert_eq!(v["meta"]["total"], deployed);
    assert!(
        v["links"]["pages"]["next"]
            .as_str()
            .unwrap()
            .contains("only_deployed=true")
    );
    sim.stop().await;
}

#[tokio::test]
async fn agents_carry_go_zero_timestamps() {
    let (d, sim) = sim(250).await;
    let (_, _, v) = send(
        client()
            .get(format!("{}/v2/gen-ai/agents", sim.base_url))
            .bearer_auth(DO_TOKEN),
    )
    .await;
    let agents = v["agents"].as_array().unwrap();
    let zero: Vec<&Value> = agents
        .iter()
        .filter(|a| a["updated_at"] == ZERO_TIME)
        .collect();
    let want = d
        .digitalocean
        .agents()
        .iter()
        .filter(|a| a.updated_at.is_none())
        .count();
    assert!(want > 0);
    assert_eq!(zero.len(), want);
    assert!(agents.iter().all(|a| a["route_created_at"] == ZERO_TIME));
    let statuses: BTreeSet<&str> = agents
        .iter()
        .map(|a| a["deployment"]["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains("STATUS_RUNNING") && statuses.len() > 1);
    sim.stop().await;
}

#[tokio::test]
async fn usage_summed_over_agents_equals_truth() {
    let (d, sim) = sim(0).await;
    let agents = d.digitalocean.agents();
    for w in windows() {
        // DigitalOcean takes whole seconds: ask [start, floor(end)) as start..=floor(end)-1s.
        let end = floor_sec(w.end);
        let w = Window::new(w.start, end);
        let mut sum = Counters::default();
        for a in agents {
            let (s, v) = usage(
                &sim,
                &a.uuid,
                &rfc3339_ms(w.start),
                &rfc3339_ms(end - Duration::seconds(1)),
            )
            .await;
            assert_eq!(s, 200, "{v}");
            let got = fold(&v);
            assert_eq!(
                got,
                d.digitalocean.truth(&TruthFilter::agent(&a.uuid), w),
                "{} {w:?}",
                a.uuid
            );
            sum.add(&got);
        }
        assert_eq!(sum, d.digitalocean.truth(&TruthFilter::default(), w));
    }
    sim.stop().await;
}

#[tokio::test]
async fn usage_has_both_blocks_other_types_and_duplicate_measurements() {
    let (d, sim) = sim(0).await;
    let (start, stop) = ("2025-01-01T00:00:00Z", "2026-12-31T23:59:59Z");
    let mut saw_other = false;
    let mut saw_insights = false;
    for a in d.digitalocean.agents() {
        let (s, v) = usage(&sim, &a.uuid, start, stop).await;
        assert_eq!(s, 200);
        assert_eq!(v["usage"]["resource_uuid"], a.uuid.as_str());
        assert_eq!(v["usage"]["start"], start);
        assert_eq!(v["usage"]["stop"], stop);
        let types: Vec<&str> = v["usage"]["measurements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["usage_type"].as_str().unwrap())
            .collect();
        saw_other |= types.iter().any(|t| *t != "INPUT" && *t != "OUTPUT");
        let inputs = types.iter().filter(|t| **t == "INPUT").count();
        assert_eq!(inputs, if a.split_input_measurement { 2 } else { 1 });
        assert_eq!(
            v.get("log_insights_usage").is_none(),
            a.omit_log_insights_block
        );
        if a.log_insights_enabled {
            let li = v["log_insights_usage"]["measurements"].as_array().unwrap();
            saw_insights |= !li.is_empty();
            let li_input: u64 = li
                .iter()
                .filter(|m| m["usage_type"] == "INPUT")
                .map(|m| m["tokens"].as_u64().unwrap())
                .sum();
            let w = Window::new(
                chrono::DateTime::parse_from_rfc3339(start)
                    .unwrap()
                    .to_utc(),
                chrono::DateTime::parse_from_rfc3339(stop).unwrap().to_utc() + Duration::seconds(1),
            );
            let f = TruthFilter {
                agent: Some(a.uuid.clone()),
                usage_type: Some("log_insights:INPUT".to_owned()),
                ..TruthFilter::default()
            };
            assert_eq!(li_input, d.digitalocean.truth(&f, w).other);
        }
    }
    assert!(saw_other && saw_insights);
    sim.stop().await;
}

#[tokio::test]
async fn usage_stop_is_inclusive_at_second_precision() {
    let (d, sim) = sim(0).await;
    let a = &d.digitalocean.agents()[0];
    let e = d
        .digitalocean
        .events(&a.uuid)
        .iter()
        .find(|e| e.at != floor_sec(e.at) && !e.log_insights && e.usage_type == "OUTPUT")
        .unwrap();
    let s = floor_sec(e.at);
    let secs = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // stop = the event's whole second: the event (at s + some ms) counts.
    let (_, v) = usage(&sim, &a.uuid, &secs(s - Duration::seconds(5)), &secs(s)).await;
    let with = fold(&v);
    let truth = d.digitalocean.truth(
        &TruthFilter::agent(&a.uuid),
        Window::new(s - Duration::seconds(5), s + Duration::seconds(1)),
    );
    assert_eq!(with, truth);
    assert!(with.output >= e.tokens);
    // One second earlier: it does not.
    let (_, v) = usage(
        &sim,
        &a.uuid,
        &secs(s - Duration::seconds(5)),
        &secs(s - Duration::seconds(1)),
    )
    .await;
    let without = fold(&v);
    assert_eq!(with.output - without.output, {
        d.digitalocean
            .truth(
                &TruthFilter::agent(&a.uuid),
                Window::new(s, s + Duration::seconds(1)),
            )
            .output
    });
    assert!(with.output - without.output >= e.tokens);
    sim.stop().await;
}

#[tokio::test]
async fn usage_rejects_bad_dates_and_unknown_agents_with_do_error_bodies() {
    let (d, sim) = sim(250).await;
    let uuid = &d.digitalocean.agents()[0].uuid;
    let (s, h, v) = send(
        client()
            .get(format!(
                "{}/v2/gen-ai/agents/{uuid}/usage?start=yesterday&stop=2026-01-01T00:00:00Z",
                sim.base_url
            ))
            .bearer_auth(DO_TOKEN),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["id"], "bad_request");
    assert!(v["message"].as_str().unwrap().contains("start"));
    assert!(v["request_id"].is_string());
    assert!(header(&h, "ratelimit-remaining").is_some());

    let (s, v) = usage(
        &sim,
        "00000000-0000-4000-8000-000000000000",
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(v["id"], "not_found");
    assert_eq!(
        v["message"],
        "The resource you requested could not be found."
    );
    assert!(v["request_id"].is_string());
    sim.stop().await;
}

#[tokio::test]
async fn bearer_auth_is_required() {
    let (_, sim) = sim(250).await;
    let c = client();
    for req in [
        c.get(format!("{}/v2/gen-ai/agents", sim.base_url)),
        c.get(format!("{}/v2/gen-ai/agents", sim.base_url))
            .bearer_auth("wrong"),
        c.get(format!("{}/v2/gen-ai/agents", sim.base_url))
            .header("authorization", DO_TOKEN),
    ] {
        let (s, h, v) = send(req).await;
        assert_eq!(s, 401);
        assert_eq!(v["id"], "unauthorized");
        assert_eq!(v["message"], "Unable to authenticate you.");
        assert!(header(&h, "ratelimit-limit").is_some());
    }
    sim.stop().await;
}

#[tokio::test]
async fn without_a_limit_there_is_no_budget_to_report() {
    let (d, sim) = sim(0).await;
    let uuid = &d.digitalocean.agents()[0].uuid;
    let url = format!("{}/v2/gen-ai/agents/{uuid}/usage", sim.base_url);
    for _ in 0..300 {
        let (s, h, _) = send(client().get(&url).bearer_auth(DO_TOKEN)).await;
        assert_eq!(s, 200);
        assert!(header(&h, "ratelimit-limit").is_none());
        assert!(header(&h, "ratelimit-remaining").is_none());
    }
    sim.stop().await;
}

#[tokio::test]
async fn default_budget_is_250_per_minute() {
    let d = data();
    let sim = start_digitalocean(d.clone(), DoOptions::default(), None)
        .await
        .unwrap();
    let uuid = &d.digitalocean.agents()[0].uuid;
    let url = format!("{}/v2/gen-ai/agents/{uuid}/usage", sim.base_url);
    let (s, h, _) = send(client().get(&url).bearer_auth(DO_TOKEN)).await;
    assert_eq!(s, 200);
    assert_eq!(header(&h, "ratelimit-limit").unwrap(), "250");
    assert_eq!(header(&h, "ratelimit-remaining").unwrap(), "249");
    sim.stop().await;
}

#[tokio::test]
async fn rate_limit_headers_on_every_response_then_429_with_retry_after() {
    let (d, sim) = sim(3).await;
    let c = client();
    let uuid = &d.digitalocean.agents()[0].uuid;
    let url = format!("{}/v2/gen-ai/agents/{uuid}/usage", sim.base_url);
    let before = Utc::now().timestamp();
    for remaining in [2, 1, 0] {
        let (s, h, _) = send(c.get(&url).bearer_auth(DO_TOKEN)).await;
        assert_eq!(s, 200);
        assert_eq!(header(&h, "ratelimit-limit").unwrap(), "3");
        assert_eq!(
            header(&h, "ratelimit-remaining").unwrap(),
            remaining.to_string()
        );
        let reset: i64 = header(&h, "ratelimit-reset").unwrap().parse().unwrap();
        assert!(
            reset >= before && reset <= before + 61,
            "{reset} vs {before}"
        );
        assert!(header(&h, "retry-after").is_none());
    }
    let (s, h, v) = send(c.get(&url).bearer_auth(DO_TOKEN)).await;
    assert_eq!(s, 429);
    assert_eq!(v["id"], "too_many_requests");
    assert_eq!(v["message"], "API rate limit exceeded.");
    assert_eq!(header(&h, "ratelimit-remaining").unwrap(), "0");
    let retry: u64 = header(&h, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // The list route shares the per-token budget; unauthenticated calls still get headers.
    let (s, _, _) = send(
        c.get(format!("{}/v2/gen-ai/agents", sim.base_url))
            .bearer_auth(DO_TOKEN),
    )
    .await;
    assert_eq!(s, 429);
    let (s, h, _) = send(c.get(format!("{}/v2/gen-ai/agents", sim.base_url))).await;
    assert_eq!(s, 401);
    assert_eq!(header(&h, "ratelimit-remaining").unwrap(), "0");
    assert_eq!(sim.calls("do.usage"), 4);
    sim.stop().await;
}
