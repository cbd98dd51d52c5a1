//! ChatBotKit simulator: CONTRACTS.md §3.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Duration;
use serde_json::{Value, json};
use usage_core::{UNATTRIBUTED_AGENT, Window};
use usage_sim::{
    BASE_TYPE, CBK_TOKEN, CursorEnd, Dataset, EMBEDDING_TYPE, SimHandle, TakeLimit, TruthFilter,
    start_chatbotkit,
};

use crate::common::{client, data, rfc3339_ms, send, spec, windows};

async fn sim() -> (Arc<Dataset>, SimHandle) {
    let d = data();
    let h = start_chatbotkit(d.clone(), None).await.unwrap();
    (d, h)
}

async fn get(sim: &SimHandle, path_and_query: &str) -> (u16, Value) {
    let (s, _, v) = send(
        client()
            .get(format!("{}{path_and_query}", sim.base_url))
            .bearer_auth(CBK_TOKEN),
    )
    .await;
    (s, v)
}

/// Pages through a list with every documented stop condition; returns items and the last
/// response.
async fn all_items(sim: &SimHandle, path: &str, query: &str, take: usize) -> (Vec<Value>, Value) {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut url = format!("{path}?take={take}{query}");
        if let Some(c) = &cursor {
            url = format!("{url}&cursor={c}");
        }
        let (s, v) = get(sim, &url).await;
        assert_eq!(s, 200, "{v}");
        let page = v["items"].as_array().unwrap().clone();
        let n = page.len();
        items.extend(page);
        let next = v.get("cursor").and_then(Value::as_str).map(str::to_owned);
        let stop =
            n == 0 || next.as_deref().is_none_or(str::is_empty) || next == cursor || n < take;
        if stop {
            return (items, v);
        }
        cursor = next;
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn usage_list_cursor_end_modes() {
    let (d, sim) = sim().await;
    let all: Vec<&str> = d
        .chatbotkit
        .records()
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(
        all.len() % 50,
        0,
        "the last page must be full to tell the modes apart"
    );
    for mode in [
        CursorEnd::Absent,
        CursorEnd::Empty,
        CursorEnd::Repeat,
        CursorEnd::LastItem,
    ] {
        sim.faults().set_cursor_end(mode);
        let (items, last) = all_items(&sim, "/v1/usage/list", "&order=asc", 50).await;
        let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(ids, all, "{mode:?}");
        match mode {
            CursorEnd::Absent => assert!(last.get("cursor").is_none()),
            CursorEnd::Empty => assert_eq!(last["cursor"], ""),
            CursorEnd::Repeat => {
                // The last full page repeats the cursor that was sent.
                assert_eq!(last["cursor"], ids[ids.len() - 51]);
            }
            CursorEnd::LastItem => {
                // The last full page points at its last item; the page after it is empty and
                // has no cursor.
                assert_eq!(last["items"], json!([]));
                assert!(last.get("cursor").is_none());
                let url = format!(
                    "/v1/usage/list?take=50&order=asc&cursor={}",
                    ids[ids.len() - 51]
                );
                let (_, v) = get(&sim, &url).await;
                assert_eq!(v["cursor"], *ids.last().unwrap());
            }
        }
    }
    sim.stop().await;
}

#[tokio::test]
async fn usage_list_defaults_to_desc_with_epoch_ms_timestamps() {
    let (d, sim) = sim().await;
    let (items, _) = all_items(&sim, "/v1/usage/list", "", 100).await;
    assert_eq!(items.len(), d.chatbotkit.records().len());
    let origin = spec().origin().timestamp_millis();
    let now = spec().now.timestamp_millis();
    let mut prev = i64::MAX;
    for i in &items {
        let created = i["createdAt"]
            .as_i64()
            .expect("createdAt is an integer (epoch ms)");
        assert!(i["updatedAt"].as_i64().unwrap() >= created);
        assert!((origin..now).contains(&created));
        assert!(created <= prev, "descending by default");
        prev = created;
        assert!(i["count"].is_u64());
        assert!(i["type"].is_string());
    }
    // The default page size.
    let (_, v) = get(&sim, "/v1/usage/list").await;
    assert_eq!(
        v["items"].as_array().unwrap().len(),
        usage_sim::CBK_DEFAULT_TAKE
    );
    sim.stop().await;
}

#[tokio::test]
async fn take_above_the_limit_is_clamped_or_refused() {
    let (d, sim) = sim().await;
    let n = d.chatbotkit.records().len();
    assert!(n > 200, "the data must fill more than two small pages");
    let len = |v: &Value| v["items"].as_array().unwrap().len();
    // By default up to CBK_MAX_TAKE items come back.
    let (s, v) = get(&sim, "/v1/usage/list?take=100000").await;
    assert_eq!(s, 200);
    assert_eq!(len(&v), n.min(usage_sim::CBK_MAX_TAKE));
    // Clamped quietly: fewer items than asked, with a cursor to go on.
    sim.faults().set_take_limit(TakeLimit {
        max: 100,
        reject: false,
    });
    let (s, v) = get(&sim, "/v1/usage/list?take=500").await;
    assert_eq!((s, len(&v)), (200, 100));
    assert!(v["cursor"].is_string());
    let (s, v) = get(&sim, "/v1/bot/list?take=500").await;
    assert_eq!((s, len(&v)), (200, d.chatbotkit.bots().len().min(100)));
    // Refused: a 400 in the vendor's error shape; a take within the limit still works.
    sim.faults().set_take_limit(TakeLimit {
        max: 100,
        reject: true,
    });
    for path in ["/v1/usage/list", "/v1/bot/list"] {
        let (s, v) = get(&sim, &format!("{path}?take=101")).await;
        assert_eq!(s, 400, "{path}");
        assert_eq!(v["message"], "take must be at most 100", "{path}: {v}");
        let (s, _) = get(&sim, &format!("{path}?take=100")).await;
        assert_eq!(s, 200, "{path}");
    }
    // `clear` keeps the limit, like the cursor-end mode.
    sim.faults().clear();
    let (s, _) = get(&sim, "/v1/usage/list?take=101").await;
    assert_eq!(s, 400);
    sim.stop().await;
}

type RecordPredicate<'a> = Box<dyn Fn(&usage_sim::CbkRecord) -> bool + 'a>;

#[tokio::test]
async fn usage_list_honours_record_filters() {
    let (d, sim) = sim().await;
    let records = d.chatbotkit.records();
    let bot = &d.chatbotkit.bots()[1].id;
    let conv = records
        .iter()
        .find_map(|r| r.conversation_id.clone())
        .unwrap();
    let contact = records.iter().find_map(|r| r.contact_id.clone()).unwrap();
    let cases: Vec<(String, RecordPredicate)> = vec![
        (
            format!("&botId={bot}"),
            Box::new(|r| r.bot_id.as_ref() == Some(bot)),
        ),
        (
            format!("&conversationId={conv}"),
            Box::new(|r| r.conversation_id.as_ref() == Some(&conv)),
        ),
        (
            format!("&contactId={contact}"),
            Box::new(|r| r.contact_id.as_ref() == Some(&contact)),
        ),
        (
            format!("&type={EMBEDDING_TYPE}"),
            Box::new(|r| r.usage_type == EMBEDDING_TYPE),
        ),
        (
            format!("&botId={bot}&type={BASE_TYPE}"),
            Box::new(|r| r.bot_id.as_ref() == Some(bot) && r.usage_type == BASE_TYPE),
        ),
        (
            "&meta%5Bchannel%5D=slack".to_owned(),
            Box::new(|r| r.meta.get("channel").is_some_and(|c| c == "slack")),
        ),
        (
            "&meta.channel=slack".to_owned(),
            Box::new(|r| r.meta.get("channel").is_some_and(|c| c == "slack")),
        ),
    ];
    for (q, pred) in cases {
        let want: Vec<&str> = records
            .iter()
            .rev()
            .filter(|r| pred(r))
            .map(|r| r.id.as_str())
            .collect();
        assert!(!want.is_empty(), "{q}");
        assert!(want.len() < records.len(), "{q}");
        let (items, _) = all_items(&sim, "/v1/usage/list", &q, 7).await;
        let got: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
        assert_eq!(got, want, "{q}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn api_v1_paths_are_aliases() {
    let (d, sim) = sim().await;
    let bot = &d.chatbotkit.bots()[0].id;
    for path in [
        "/usage/list?take=5".to_owned(),
        "/bot/list".to_owned(),
        format!("/bot/{bot}/usage/fetch?from=2025-12-01T00:00:00Z&to=2026-01-31T23:59:59.999Z"),
    ] {
        let (s1, a) = get(&sim, &format!("/v1{path}")).await;
        let (s2, b) = get(&sim, &format!("/api/v1{path}")).await;
        assert_eq!((s1, s2), (200, 200));
        assert_eq!(a, b);
    }
    assert_eq!(sim.calls("cbk.usage_list"), 2);
    assert_eq!(sim.calls("cbk.bots"), 2);
    assert_eq!(sim.calls("cbk.bot_usage"), 2);
    sim.stop().await;
}

#[tokio::test]
async fn errors_use_message_and_code() {
    let (_, sim) = sim().await;
    let c = client();
    let (s, _, v) = send(c.get(format!("{}/v1/usage/list", sim.base_url))).await;
    assert_eq!(s, 401);
    assert_eq!(
        v,
        json!({"message": "Not authenticated", "code": "NOT_AUTHENTICATED"})
    );
    let (s, _, v) = send(
        c.get(format!("{}/api/v1/bot/list", sim.base_url))
            .bearer_auth("nope"),
    )
    .await;
    assert_eq!((s, &v["code"]), (401, &json!("NOT_AUTHENTICATED")));
    let (s, v) = get(&sim, "/v1/usage/list?cursor=unknown").await;
    assert_eq!((s, &v["code"]), (400, &json!("BAD_REQUEST")));
    assert!(v["message"].is_string());
    let (s, v) = get(&sim, "/v1/bot/nope/usage/fetch").await;
    assert_eq!((s, &v["code"]), (404, &json!("NOT_FOUND")));
    let (s, v) = get(&sim, "/v1/nothing/here").await;
    assert_eq!((s, &v["code"]), (404, &json!("NOT_FOUND")));
    sim.faults().force_next(1, 429);
    let (s, v) = get(&sim, "/v1/bot/list").await;
    assert_eq!((s, &v["code"]), (429, &json!("TOO_MANY_REQUESTS")));
    sim.faults().force_limits_reached(1);
    let (s, v) = get(&sim, "/v1/bot/list").await;
    assert_eq!((s, &v["code"]), (429, &json!("LIMITS_REACHED")));
    assert!(v["message"].is_string());
    let (s, _) = get(&sim, "/v1/bot/list").await;
    assert_eq!(s, 200);
    sim.stop().await;
}

#[tokio::test]
async fn bot_fetch_equals_base_truth_with_inclusive_to() {
    let (d, sim) = sim().await;
    for bot in d.chatbotkit.bots() {
        for w in windows() {
            let from = rfc3339_ms(w.start);
            let to = rfc3339_ms(w.end - Duration::milliseconds(1));
            let (s, v) = get(
                &sim,
                &format!("/v1/bot/{}/usage/fetch?from={from}&to={to}", bot.id),
            )
            .await;
            assert_eq!(s, 200);
            let f = TruthFilter {
                agent: Some(bot.id.clone()),
                usage_type: Some(BASE_TYPE.to_owned()),
                ..TruthFilter::default()
            };
            assert_eq!(
                v["tokens"].as_u64().unwrap(),
                d.chatbotkit.truth(&f, w),
                "{} {w:?}",
                bot.id
            );
            let in_w: Vec<_> = d
                .chatbotkit
                .records()
                .iter()
                .filter(|r| {
                    r.bot_id.as_ref() == Some(&bot.id) && w.contains(usage_sim_time(r.created_at))
                })
                .collect();
            let convs: BTreeSet<_> = in_w
                .iter()
                .filter_map(|r| r.conversation_id.as_ref())
                .collect();
            assert_eq!(v["conversations"].as_u64().unwrap(), convs.len() as u64);
            assert_eq!(
                v["messages"].as_u64().unwrap(),
                in_w.iter().filter(|r| r.message_id.is_some()).count() as u64
            );
        }
    }
    // BASE-only: the bot's EMBEDDING credits are not in `tokens`.
    let bot = &d.chatbotkit.bots()[0].id;
    let all = Window::new(spec().origin(), spec().now);
    let any = TruthFilter::agent(bot.clone());
    let (_, v) = get(&sim, &format!("/v1/bot/{bot}/usage/fetch")).await;
    assert!(v["tokens"].as_u64().unwrap() < d.chatbotkit.truth(&any, all));
    // `to` is inclusive: a record exactly at `to` counts.
    let r = d
        .chatbotkit
        .records()
        .iter()
        .find(|r| r.bot_id.as_ref() == Some(bot) && r.usage_type == BASE_TYPE)
        .unwrap();
    let t = rfc3339_ms(usage_sim_time(r.created_at));
    let (_, v) = get(&sim, &format!("/v1/bot/{bot}/usage/fetch?from={t}&to={t}")).await;
    assert!(v["tokens"].as_u64().unwrap() >= r.count);
    let before = rfc3339_ms(usage_sim_time(r.created_at - 1));
    let (_, v0) = get(
        &sim,
        &format!("/v1/bot/{bot}/usage/fetch?from={t}&to={before}"),
    )
    .await;
    assert_eq!(v0["tokens"], 0);
    sim.stop().await;
}

fn usage_sim_time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap()
}

#[tokio::test]
async fn records_without_bot_are_unattributed_in_truth() {
    let (d, sim) = sim().await;
    let (items, _) = all_items(&sim, "/v1/usage/list", "", 100).await;
    let all = Window::new(spec().origin(), spec().now);
    let unattributed: u64 = items
        .iter()
        .filter(|i| i.get("botId").is_none())
        .map(|i| i["count"].as_u64().unwrap())
        .sum();
    assert!(unattributed > 0);
    assert_eq!(
        d.chatbotkit
            .truth(&TruthFilter::agent(UNATTRIBUTED_AGENT), all),
        unattributed
    );
    let total: u64 = items.iter().map(|i| i["count"].as_u64().unwrap()).sum();
    assert_eq!(d.chatbotkit.truth(&TruthFilter::default(), all), total);
    // Only credit-token types.
    let types: BTreeSet<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(types, BTreeSet::from([BASE_TYPE, EMBEDDING_TYPE]));
    sim.stop().await;
}

#[tokio::test]
async fn bot_list_pages_with_cursor() {
    let (d, sim) = sim().await;
    let (items, last) = all_items(&sim, "/v1/bot/list", "&order=asc", 2).await;
    let mut want: Vec<_> = d.chatbotkit.bots().to_vec();
    want.sort_by_key(|b| (b.created_at, b.id.clone()));
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, want.iter().map(|b| b.id.as_str()).collect::<Vec<_>>());
    assert!(last.get("cursor").is_none());
    assert!(
        items
            .iter()
            .all(|i| i["createdAt"].is_i64() && i["updatedAt"].is_i64() && i["name"].is_string())
    );
    sim.stop().await;
}
