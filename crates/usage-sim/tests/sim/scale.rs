//! The benchmark-sized data set works end to end (20 000 conversations, 100 000 records).

use std::sync::Arc;

use serde_json::{Value, json};
use usage_core::Window;
use usage_sim::{
    CBK_TOKEN, DataSpec, Dataset, KIBANA_API_KEY, TruthFilter, start_chatbotkit, start_kibana,
};

use crate::common::{client, now};

#[tokio::test]
async fn bench_data_pages_completely_and_matches_truth() {
    let spec = DataSpec::bench(now());
    let d = Arc::new(Dataset::generate(&spec));
    let all = Window::new(spec.origin(), spec.now);
    let c = client();

    let kibana = start_kibana(d.clone(), None).await.unwrap();
    let mut after: Option<Value> = None;
    let (mut rows, mut input) = (0, 0);
    loop {
        let mut body = json!({"size": 100, "sort_field": "total_tokens"});
        if let Some(a) = after.take() {
            body["search_after"] = a;
        }
        let v: Value = c
            .post(format!(
                "{}/api/agent_builder/agents/elastic-ai-agent/consumption",
                kibana.base_url
            ))
            .header("authorization", format!("ApiKey {KIBANA_API_KEY}"))
            .header("kbn-xsrf", "true")
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page = v["results"].as_array().unwrap();
        rows += page.len();
        input += page
            .iter()
            .map(|r| r["token_usage"]["input_tokens"].as_u64().unwrap())
            .sum::<u64>();
        if page.len() < 100 {
            break;
        }
        after = Some(v["search_after"].clone());
    }
    assert_eq!(rows, spec.kibana_conversations_per_agent);
    let f = TruthFilter::agent("elastic-ai-agent");
    assert_eq!(input, d.kibana.truth("default", &f, all).input);

    let cbk = start_chatbotkit(d.clone(), None).await.unwrap();
    let (mut records, mut credits, mut cursor) = (0, 0, None::<String>);
    loop {
        let mut url = format!("{}/v1/usage/list?take=100", cbk.base_url);
        if let Some(cur) = &cursor {
            url = format!("{url}&cursor={cur}");
        }
        let v: Value = c
            .get(url)
            .bearer_auth(CBK_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = v["items"].as_array().unwrap();
        records += items.len();
        credits += items
            .iter()
            .map(|i| i["count"].as_u64().unwrap())
            .sum::<u64>();
        match v.get("cursor").and_then(Value::as_str) {
            Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    assert_eq!(records, spec.cbk_records);
    assert_eq!(credits, d.chatbotkit.truth(&TruthFilter::default(), all));
    kibana.stop().await;
    cbk.stop().await;
}
