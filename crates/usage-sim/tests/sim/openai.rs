//! The OpenAI simulator over HTTP: its quirks and validation (part D of the contract).

use serde_json::Value;
use usage_sim::{OPENAI_ADMIN_KEY, SimHandle, TruthFilter, start_openai};

use crate::common::{client, data, now, send};

async fn get(
    sim: &SimHandle,
    route: &str,
    query: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    send(
        client()
            .get(format!("{}/v1/organization/{route}?{query}", sim.base_url))
            .bearer_auth(OPENAI_ADMIN_KEY),
    )
    .await
}

#[tokio::test]
async fn buckets_pages_cursors_and_validation() {
    let d = data();
    let sim = start_openai(d.clone(), None).await.unwrap();
    let day = 86_400;
    let start = (now().timestamp() / day - 10) * day;
    // Both array forms give the same answer; empty buckets are emitted; limit pages.
    let q = format!(
        "start_time={}&end_time={}&limit=3&group_by[]=project_id&group_by[]=model",
        start + 5,
        start + 5 * day
    );
    let (s, _, a) = get(&sim, "usage/completions", &q).await;
    assert_eq!(s, 200, "{a}");
    let (_, _, b) = get(&sim, "usage/completions", &q.replace("[]", "")).await;
    assert_eq!(a, b);
    assert_eq!(a["data"].as_array().unwrap().len(), 3);
    assert_eq!(a["data"][0]["start_time"], start, "floored to the UTC day");
    assert_eq!(a["has_more"], true);
    let next = a["next_page"].as_str().unwrap().to_owned();
    assert!(next.starts_with("page_"));
    let (s, _, c) = get(&sim, "usage/completions", &format!("{q}&page={next}")).await;
    assert_eq!(
        (s, c["data"].as_array().unwrap().len(), &c["has_more"]),
        (200, 2, &Value::Bool(false))
    );
    // A cursor sent with another query is refused.
    let (s, _, e) = get(
        &sim,
        "usage/completions",
        &format!("start_time={start}&page={next}"),
    )
    .await;
    assert_eq!((s, e["error"]["param"].as_str()), (400, Some("page")));
    // Limits per width, group_by and filters per endpoint.
    for (bad, param) in [
        (format!("start_time={start}&limit=32"), "limit"),
        (
            format!("start_time={start}&bucket_width=1h&limit=169"),
            "limit",
        ),
        (
            format!("start_time={start}&bucket_width=2h"),
            "bucket_width",
        ),
        ("limit=1".to_owned(), "start_time"),
    ] {
        let (s, _, e) = get(&sim, "usage/completions", &bad).await;
        assert_eq!(
            (s, e["error"]["param"].as_str()),
            (400, Some(param)),
            "{bad}"
        );
        assert_eq!(e["error"]["type"], "invalid_request_error");
    }
    let (s, _, e) = get(
        &sim,
        "usage/code_interpreter_sessions",
        &format!("start_time={start}&models[]=x"),
    )
    .await;
    assert_eq!((s, e["error"]["param"].as_str()), (400, Some("models")));
    let (s, _, e) = get(
        &sim,
        "usage/file_search_calls",
        &format!("start_time={start}&group_by[]=model"),
    )
    .await;
    assert_eq!((s, e["error"]["param"].as_str()), (400, Some("group_by")));
    // Vector stores answer a level; ungrouped rows carry every dimension as null.
    let (s, _, v) = get(
        &sim,
        "usage/vector_stores",
        &format!("start_time={start}&limit=1"),
    )
    .await;
    assert_eq!(s, 200);
    assert!(v["data"][0]["results"][0]["usage_bytes"].as_u64().unwrap() > 0);
    let (_, _, u) = get(
        &sim,
        "usage/completions",
        &format!("start_time={start}&end_time={}", start + day),
    )
    .await;
    let row = &u["data"][0]["results"][0];
    assert!(
        row["project_id"].is_null()
            && row["service_tier"].is_null()
            && row.get("input_uncached_tokens").is_some()
    );
    let w = usage_core::Window::new(
        chrono::DateTime::from_timestamp(start, 0).unwrap(),
        chrono::DateTime::from_timestamp(start + day, 0).unwrap(),
    );
    let truth = d.openai.truth(&TruthFilter::default(), w);
    let tokens = truth[&usage_core::Unit::Tokens].total();
    // Completions' input + output, plus embeddings and moderations, make up the tokens.
    let mut sum = row["input_tokens"].as_u64().unwrap() + row["output_tokens"].as_u64().unwrap();
    for e in ["embeddings", "moderations"] {
        let (_, _, x) = get(
            &sim,
            &format!("usage/{e}"),
            &format!("start_time={start}&end_time={}", start + day),
        )
        .await;
        sum += x["data"][0]["results"][0]["input_tokens"]
            .as_u64()
            .unwrap_or(0);
    }
    assert_eq!(sum, tokens);
    // Projects: archived ones only on request.
    let (_, _, p) = get(&sim, "projects", "limit=100").await;
    let (_, _, all) = get(&sim, "projects", "limit=100&include_archived=true").await;
    assert_eq!(
        p["data"].as_array().unwrap().len() + 1,
        all["data"].as_array().unwrap().len()
    );
    assert_eq!(sim.calls("openai.projects"), 2);
    let (s, _, _) = send(
        client()
            .get(format!("{}/v1/organization/projects", sim.base_url))
            .bearer_auth("nope"),
    )
    .await;
    assert_eq!(s, 401);
    sim.stop().await;
}
