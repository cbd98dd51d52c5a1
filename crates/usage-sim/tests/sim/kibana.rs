//! Kibana Agent Builder simulator: CONTRACTS.md §2.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use usage_core::Counters;
use usage_sim::{
    Dataset, HIGH_INPUT_TOKENS, KIBANA_API_KEY, KIBANA_PASSWORD, KIBANA_USERNAME,
    KibanaConversation, SimHandle, TruthFilter, start_kibana,
};

use crate::common::{client, data, rfc3339_ms, send, windows};

async fn sim() -> (Arc<Dataset>, SimHandle) {
    let d = data();
    let h = start_kibana(d.clone(), None).await.unwrap();
    (d, h)
}

fn prefix(space: &str) -> String {
    if space == "default" {
        String::new()
    } else {
        format!("/s/{space}")
    }
}

async fn consumption(sim: &SimHandle, space: &str, agent: &str, body: &Value) -> (u16, Value) {
    let (s, _, v) = send(
        client()
            .post(format!(
                "{}{}/api/agent_builder/agents/{agent}/consumption",
                sim.base_url,
                prefix(space)
            ))
            .header("authorization", format!("ApiKey {KIBANA_API_KEY}"))
            .header("kbn-xsrf", "true")
            .header("elastic-api-version", "2023-10-31")
            .json(body),
    )
    .await;
    (s, v)
}

/// Pages through every conversation with `body` (plus size/search_after), checking the cursor
/// contract on the way.
async fn all_pages(
    sim: &SimHandle,
    space: &str,
    agent: &str,
    body: &Value,
    size: u64,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<Value> = None;
    loop {
        let mut b = body.clone();
        b["size"] = json!(size);
        if let Some(a) = &after {
            b["search_after"] = a.clone();
        }
        let (s, v) = consumption(sim, space, agent, &b).await;
        assert_eq!(s, 200, "{v}");
        let results = v["results"].as_array().unwrap().clone();
        if results.is_empty() {
            assert!(
                v.get("search_after").is_none(),
                "an empty page has no search_after"
            );
            break;
        }
        // search_after is present on every non-empty page, the last one included.
        after = Some(v["search_after"].clone());
        let n = results.len() as u64;
        out.extend(results);
        if n < size {
            break;
        }
    }
    out
}

fn boom(v: &Value, status: u16, message: &str) {
    let error = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => unreachable!(),
    };
    assert_eq!(
        v,
        &json!({"statusCode": status, "error": error, "message": message})
    );
}

#[tokio::test]
async fn post_without_kbn_xsrf_is_rejected() {
    let (_, sim) = sim().await;
    let url = format!(
        "{}/api/agent_builder/agents/elastic-ai-agent/consumption",
        sim.base_url
    );
    let auth = format!("ApiKey {KIBANA_API_KEY}");
    let (s, _, v) = send(
        client()
            .post(&url)
            .header("authorization", &auth)
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 400);
    boom(&v, 400, "Request must contain a kbn-xsrf header.");
    // kbn-version exempts a request too.
    let (s, _, _) = send(
        client()
            .post(&url)
            .header("authorization", &auth)
            .header("kbn-version", "9.4.0")
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 200);
    sim.stop().await;
}

#[tokio::test]
async fn body_validation_uses_config_schema_messages() {
    let (_, sim) = sim().await;
    let agent = "elastic-ai-agent";
    let (s, v) = consumption(&sim, "default", agent, &json!({"size": 10, "from": 3})).await;
    assert_eq!(s, 400);
    boom(
        &v,
        400,
        "[request body.from]: definition for this key is missing",
    );
    let (s, v) = consumption(&sim, "default", agent, &json!({"size": 101})).await;
    assert_eq!(s, 400);
    boom(
        &v,
        400,
        "[request body.size]: Value must be equal to or lower than [100].",
    );
    let (_, v) = consumption(&sim, "default", agent, &json!({"size": 0})).await;
    boom(
        &v,
        400,
        "[request body.size]: Value must be equal to or greater than [1].",
    );
    let (_, v) = consumption(&sim, "default", agent, &json!({"size": "many"})).await;
    boom(
        &v,
        400,
        "[request body.size]: expected value of type [number] but got [string]",
    );
    let (s, v) = consumption(&sim, "default", agent, &json!({"sort_field": "created_at"})).await;
    assert_eq!(s, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("[request body.sort_field]: types that failed validation:")
    );
    // Numeric strings are coerced; the default size is 25.
    let (s, v) = consumption(&sim, "default", agent, &json!({"size": "30"})).await;
    assert_eq!(s, 200);
    assert_eq!(v["results"].as_array().unwrap().len(), 30);
    let (_, v) = consumption(&sim, "default", agent, &json!({})).await;
    assert_eq!(v["results"].as_array().unwrap().len(), 25);
    assert_eq!(v["total"], 40);
    sim.stop().await;
}

/// Asserts that `rows` come without duplicates in the route's order: by `field` (`order`), then
/// `created_at` ascending.
fn assert_sorted(rows: &[Value], field: &str, order: &str) {
    let ids: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), rows.len(), "no duplicates across pages");
    let key = |r: &Value| -> (i64, String) {
        let k = match field {
            "updated_at" => time(&r["updated_at"]).timestamp_millis(),
            "total_tokens" => r["token_usage"]["total_tokens"].as_i64().unwrap(),
            _ => r["round_count"].as_i64().unwrap(),
        };
        (
            if order == "desc" { -k } else { k },
            r["created_at"].as_str().unwrap().to_owned(),
        )
    };
    for pair in rows.windows(2) {
        assert!(
            key(&pair[0]) < key(&pair[1]),
            "{field} {order}: {} then {}",
            pair[0],
            pair[1]
        );
    }
}

/// Parses an RFC 3339 time of a response.
fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .to_utc()
}

#[tokio::test]
async fn sorting_and_search_after_including_the_last_page() {
    let (d, sim) = sim().await;
    let agent = "elastic-ai-agent";
    let convs = d.kibana.conversations("default", agent);
    for field in ["updated_at", "total_tokens", "round_count"] {
        for order in ["asc", "desc"] {
            let body = json!({"sort_field": field, "sort_order": order});
            let rows = all_pages(&sim, "default", agent, &body, 7).await;
            assert_eq!(rows.len(), convs.len());
            assert_sorted(&rows, field, order);
        }
    }
    // The last page (40 = 5 * 7 + 5) still carries search_after = sort values of its last hit.
    let (_, first) = consumption(
        &sim,
        "default",
        agent,
        &json!({"size": 35, "sort_field": "total_tokens"}),
    )
    .await;
    let (_, last) = consumption(
        &sim,
        "default",
        agent,
        &json!({"size": 35, "sort_field": "total_tokens", "search_after": first["search_after"]}),
    )
    .await;
    let rows = last["results"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    let tail = rows.last().unwrap();
    let created =
        chrono::DateTime::parse_from_rfc3339(tail["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        last["search_after"],
        json!([
            tail["token_usage"]["total_tokens"],
            created.timestamp_millis()
        ])
    );
    sim.stop().await;
}

#[tokio::test]
async fn unknown_agent_is_200_with_no_results() {
    let (_, sim) = sim().await;
    let (s, v) = consumption(&sim, "default", "no-such-agent", &json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(v["results"], json!([]));
    assert_eq!(v["total"], 0);
    assert!(v.get("search_after").is_none());
    sim.stop().await;
}

type ConversationPredicate<'a> = Box<dyn Fn(&usage_sim::KibanaConversation) -> bool + 'a>;

#[tokio::test]
async fn filters_work_and_total_with_warnings_is_always_zero() {
    let (d, sim) = sim().await;
    let agent = "elastic-ai-agent";
    let convs = d.kibana.conversations("default", agent);
    let (_, plain) = consumption(&sim, "default", agent, &json!({})).await;
    let cases: Vec<(Value, ConversationPredicate)> = vec![
        (
            json!({"has_warnings": true}),
            Box::new(|c| !c.warnings.is_empty()),
        ),
        (
            json!({"has_warnings": "false"}),
            Box::new(|c| c.warnings.is_empty()),
        ),
        (
            json!({"usernames": ["alice", "bob"]}),
            Box::new(|c| c.username == "alice" || c.username == "bob"),
        ),
        (
            json!({"search": "LOGS"}),
            Box::new(|c| c.title.to_lowercase().contains("logs")),
        ),
    ];
    for (body, pred) in cases {
        let want: BTreeSet<&str> = convs
            .iter()
            .filter(|c| pred(c))
            .map(|c| c.id.as_str())
            .collect();
        assert!(!want.is_empty(), "{body}");
        let mut sized = body.clone();
        sized["size"] = json!(100);
        let (s, v) = consumption(&sim, "default", agent, &sized).await;
        assert_eq!(s, 200, "{v}");
        let got: BTreeSet<&str> = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["conversation_id"].as_str().unwrap())
            .collect();
        assert_eq!(got, want, "{body}");
        assert_eq!(v["total"], want.len());
        assert_eq!(v["aggregations"]["total_with_warnings"], 0);
        // The usernames aggregation ignores the filters.
        assert_eq!(
            v["aggregations"]["usernames"],
            plain["aggregations"]["usernames"]
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn spaces_are_separate() {
    let (d, sim) = sim().await;
    let c = client();
    let auth = format!("ApiKey {KIBANA_API_KEY}");
    let (_, _, def) = send(
        c.get(format!("{}/api/agent_builder/agents", sim.base_url))
            .header("authorization", &auth),
    )
    .await;
    let (_, _, mkt) = send(
        c.get(format!(
            "{}/s/marketing/api/agent_builder/agents",
            sim.base_url
        ))
        .header("authorization", &auth),
    )
    .await;
    let ids = |v: &Value| -> Vec<String> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&def),
        d.kibana
            .agents("default")
            .into_iter()
            .map(|a| a.id)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        ids(&mkt),
        d.kibana
            .agents("marketing")
            .into_iter()
            .map(|a| a.id)
            .collect::<Vec<_>>()
    );
    assert_ne!(ids(&def), ids(&mkt));
    assert_eq!(ids(&def)[0], "elastic-ai-agent");
    assert_eq!(ids(&mkt)[0], "elastic-ai-agent");
    // The same agent id holds different conversations per space.
    let a = all_pages(&sim, "default", "elastic-ai-agent", &json!({}), 100).await;
    let b = all_pages(&sim, "marketing", "elastic-ai-agent", &json!({}), 100).await;
    let sa: BTreeSet<&str> = a
        .iter()
        .map(|r| r["conversation_id"].as_str().unwrap())
        .collect();
    let sb: BTreeSet<&str> = b
        .iter()
        .map(|r| r["conversation_id"].as_str().unwrap())
        .collect();
    assert!(sa.is_disjoint(&sb));
    // An agent of one space is unknown in the other.
    let only_default = ids(&def)
        .into_iter()
        .find(|i| !ids(&mkt).contains(i))
        .unwrap();
    let (s, v) = consumption(&sim, "marketing", &only_default, &json!({})).await;
    assert_eq!((s, v["total"].as_u64()), (200, Some(0)));
    // An unknown space is a Boom 404.
    let (s, v) = consumption(&sim, "nope", "elastic-ai-agent", &json!({})).await;
    assert_eq!(s, 404);
    boom(&v, 404, "Saved object [space/nope] not found");
    sim.stop().await;
}

#[tokio::test]
async fn api_key_and_basic_auth_are_accepted() {
    let (_, sim) = sim().await;
    let c = client();
    let url = format!("{}/s/marketing/api/agent_builder/agents", sim.base_url);
    let (s, _, _) = send(
        c.get(&url)
            .header("authorization", format!("ApiKey {KIBANA_API_KEY}")),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = send(
        c.get(&url)
            .basic_auth(KIBANA_USERNAME, Some(KIBANA_PASSWORD)),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = send(
        c.post(format!(
            "{}/api/agent_builder/agents/x/consumption",
            sim.base_url
        ))
        .basic_auth(KIBANA_USERNAME, Some(KIBANA_PASSWORD))
        .header("kbn-xsrf", "1")
        .json(&json!({})),
    )
    .await;
    assert_eq!(s, 200);
    for req in [
        c.get(&url),
        c.get(&url).basic_auth(KIBANA_USERNAME, Some("wrong")),
        c.get(&url).header("authorization", "ApiKey wrong"),
        c.get(&url).bearer_auth(KIBANA_API_KEY),
    ] {
        let (s, h, v) = send(req).await;
        assert_eq!(s, 401);
        boom(&v, 401, "Unauthorized");
        assert!(h.contains_key("www-authenticate"));
    }
    sim.stop().await;
}

#[tokio::test]
async fn consumption_totals_and_warnings_equal_truth() {
    let (d, sim) = sim().await;
    for space in d.kibana.spaces() {
        for agent in d.kibana.agents(space) {
            let rows = all_pages(
                &sim,
                space,
                &agent.id,
                &json!({"sort_field": "updated_at"}),
                100,
            )
            .await;
            assert_eq!(rows.len(), d.kibana.conversations(space, &agent.id).len());
            for w in windows() {
                let mut c = Counters::default();
                let mut warnings = 0;
                let mut alice = Counters::default();
                for r in &rows {
                    let t = chrono::DateTime::parse_from_rfc3339(r["updated_at"].as_str().unwrap())
                        .unwrap()
                        .to_utc();
                    if !w.contains(t) {
                        continue;
                    }
                    let u = &r["token_usage"];
                    let (i, o) = (
                        u["input_tokens"].as_u64().unwrap(),
                        u["output_tokens"].as_u64().unwrap(),
                    );
                    assert_eq!(u["total_tokens"].as_u64().unwrap(), i + o);
                    c.input += i;
                    c.output += o;
                    if r["user"]["username"] == "alice" {
                        alice.input += i;
                        alice.output += o;
                    }
                    for wn in r["warnings"].as_array().unwrap() {
                        assert_eq!(wn["type"], "high_input_tokens");
                        assert!(wn["input_tokens"].as_u64().unwrap() > HIGH_INPUT_TOKENS);
                        warnings += 1;
                    }
                }
                let f = TruthFilter::agent(&agent.id);
                assert_eq!(
                    c,
                    d.kibana.truth(space, &f, w),
                    "{space} {} {w:?}",
                    agent.id
                );
                assert_eq!(warnings, d.kibana.warnings(space, &f, w));
                let f = TruthFilter {
                    user: Some("alice".into()),
                    ..f
                };
                assert_eq!(alice, d.kibana.truth(space, &f, w));
            }
        }
    }
    // Some conversations lack user.id, some rows carry warnings.
    let rows = all_pages(&sim, "default", "elastic-ai-agent", &json!({}), 100).await;
    assert!(rows.iter().any(|r| r["user"].get("id").is_none()));
    assert!(rows.iter().any(|r| r["user"].get("id").is_some()));
    assert!(
        rows.iter()
            .any(|r| !r["warnings"].as_array().unwrap().is_empty())
    );
    sim.stop().await;
}

/// The usage a consumption row shows: its tokens and LLM calls, rounds and `updated_at`.
fn shown(r: &Value) -> (u64, u64, u64, u64, u64, String) {
    let u = &r["token_usage"];
    (
        u["input_tokens"].as_u64().unwrap(),
        u["output_tokens"].as_u64().unwrap(),
        u["total_tokens"].as_u64().unwrap(),
        r["llm_calls"].as_u64().unwrap(),
        r["round_count"].as_u64().unwrap(),
        r["updated_at"].as_str().unwrap().to_owned(),
    )
}

/// What a row of `c` must show with the clock at `t`, summed from its rounds up to `t`.
fn expected(c: &KibanaConversation, t: DateTime<Utc>) -> (u64, u64, u64, u64, u64, String) {
    let rounds: Vec<_> = c.rounds.iter().filter(|r| r.at <= t).collect();
    let (i, o) = (
        rounds.iter().map(|r| r.input_tokens).sum::<u64>(),
        rounds.iter().map(|r| r.output_tokens).sum::<u64>(),
    );
    (
        i,
        o,
        i + o,
        rounds.iter().map(|r| r.llm_calls).sum(),
        rounds.len() as u64,
        rfc3339_ms(rounds.last().unwrap().at),
    )
}

fn find<'a>(rows: &'a [Value], id: &str) -> Option<&'a Value> {
    rows.iter().find(|r| r["conversation_id"] == id)
}

/// With the clock set, polls see a conversation grow (the totals and `updated_at` of its rounds
/// up to the clock) and one not begun yet absent; without it, the full data again. This is
/// what the gateway's periodic polls of lifetime totals meet in reality.
#[tokio::test]
async fn clock_shows_a_conversation_growing_and_a_later_one_absent() {
    let (d, sim) = sim().await;
    let agent = "elastic-ai-agent";
    let convs = d.kibana.conversations("default", agent);
    let c = convs
        .iter()
        .filter(|c| c.rounds.len() >= 3)
        .max_by_key(|c| c.updated_at - c.created_at)
        .unwrap();
    let mut inputs = Vec::new();
    for t in [
        c.created_at,
        c.rounds[1].at + Duration::milliseconds(1),
        c.updated_at,
    ] {
        sim.set_clock(Some(t));
        assert_eq!(sim.clock(), Some(t));
        let rows = all_pages(&sim, "default", agent, &json!({}), 100).await;
        let row = shown(find(&rows, &c.id).unwrap());
        assert_eq!(row, expected(c, t), "as of {t}");
        inputs.push(row.0);
    }
    assert!(inputs.windows(2).all(|p| p[0] < p[1]), "{inputs:?}");
    assert_eq!(inputs[2], c.input_tokens);
    // The latest conversation is absent a millisecond before its first round, then shows it.
    let late = convs.iter().rev().find(|c| c.rounds.len() > 1).unwrap();
    let before = late.created_at - Duration::milliseconds(1);
    sim.set_clock(Some(before));
    let (_, v) = consumption(&sim, "default", agent, &json!({"size": 100})).await;
    let rows = v["results"].as_array().unwrap();
    assert!(find(rows, &late.id).is_none());
    let begun = convs.iter().filter(|c| c.rounds[0].at <= before).count();
    assert_eq!(
        (rows.len(), v["total"].as_u64()),
        (begun, Some(begun as u64))
    );
    sim.set_clock(Some(late.created_at));
    let rows = all_pages(&sim, "default", agent, &json!({}), 100).await;
    let row = shown(find(&rows, &late.id).unwrap());
    assert_eq!(row, expected(late, late.created_at));
    assert_eq!(row.4, 1);
    sim.set_clock(None);
    let rows = all_pages(&sim, "default", agent, &json!({}), 100).await;
    assert_eq!(rows.len(), convs.len());
    assert_eq!(
        shown(find(&rows, &c.id).unwrap()),
        expected(c, c.updated_at)
    );
    sim.stop().await;
}

/// Sorting, paging (search_after) and the usernames aggregation work on the view as of the
/// clock: pages of 7 list exactly the conversations begun by then, in the order of their as-of
/// values, with the counts of that view.
#[tokio::test]
async fn clock_sorts_pages_and_aggregates_the_view_as_of_it() {
    let (d, sim) = sim().await;
    let agent = "elastic-ai-agent";
    let convs = d.kibana.conversations("default", agent);
    // Mid-way through a conversation begun in the second half of the span: some are absent.
    let mid = convs[convs.len() / 2..]
        .iter()
        .find(|c| c.rounds.len() >= 3)
        .unwrap();
    let t = mid.rounds[1].at;
    sim.set_clock(Some(t));
    let view: Vec<KibanaConversation> = convs.iter().filter_map(|c| c.as_of(t)).collect();
    assert!(view.len() < convs.len());
    for field in ["updated_at", "total_tokens", "round_count"] {
        for order in ["desc", "asc"] {
            let body = json!({"sort_field": field, "sort_order": order});
            let rows = all_pages(&sim, "default", agent, &body, 7).await;
            assert_eq!(rows.len(), view.len(), "{field} {order}");
            assert_sorted(&rows, field, order);
            for c in &view {
                assert_eq!(shown(find(&rows, &c.id).unwrap()), expected(c, t));
            }
        }
    }
    let mut counts: Vec<(usize, &str)> = Vec::new();
    for c in &view {
        match counts.iter_mut().find(|(_, u)| *u == c.username) {
            Some((n, _)) => *n += 1,
            None => counts.push((1, &c.username)),
        }
    }
    counts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let (_, v) = consumption(&sim, "default", agent, &json!({})).await;
    assert_eq!(v["total"], view.len());
    let names: Vec<&str> = counts.iter().map(|(_, u)| *u).collect();
    assert_eq!(v["aggregations"]["usernames"], json!(names));
    sim.stop().await;
}

/// Polls with the clock at several instants, summed per window of their `updated_at`, equal
/// `truth_as_of`: the ground truth of what the gateway sees when it polls then.
#[tokio::test]
async fn consumption_with_a_clock_equals_truth_as_of() {
    let (d, sim) = sim().await;
    let origin = crate::common::spec().origin();
    for days in [20, 55, 88] {
        let t = origin + Duration::days(days) + Duration::milliseconds(4321);
        sim.set_clock(Some(t));
        for space in d.kibana.spaces() {
            for agent in d.kibana.agents(space) {
                let rows = all_pages(&sim, space, &agent.id, &json!({}), 100).await;
                for w in windows() {
                    let mut c = Counters::default();
                    for r in rows.iter().filter(|r| w.contains(time(&r["updated_at"]))) {
                        c.input += r["token_usage"]["input_tokens"].as_u64().unwrap();
                        c.output += r["token_usage"]["output_tokens"].as_u64().unwrap();
                    }
                    let f = TruthFilter::agent(&agent.id);
                    assert_eq!(c, d.kibana.truth_as_of(space, &f, w, t), "{t} {w:?}");
                }
            }
        }
    }
    sim.stop().await;
}
