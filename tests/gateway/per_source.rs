//! Per-source behaviour on the demo configuration over the three simulators: a source that
//! cannot serve a query is data, a `no-cache` refresh reaches the providers' own caches, and
//! the window cache is keyed by the vendor requests, not by the grouping.

use chrono::{DateTime, Duration, DurationRound, Utc};
use reqwest::header::{CACHE_CONTROL, HeaderMap, HeaderValue};
use serde_json::Value;

use crate::bounds::{Running, send};

async fn get(r: &Running, query: &str) -> Value {
    let (status, _, v) = send(r, query, HeaderMap::new(), None).await;
    assert_eq!(status, 200, "{query}: {v}");
    v
}

fn entry<'a>(v: &'a Value, source: &str) -> &'a Value {
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == source)
        .unwrap_or_else(|| panic!("no entry for {source}: {v}"))
}

/// `YYYY-MM-DD` of `days` days from today (UTC).
fn day(days: i64) -> String {
    let today = Utc::now().duration_trunc(Duration::days(1)).unwrap();
    (today + Duration::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

#[actix_web::test]
async fn a_source_over_its_call_limit_is_an_error_entry_and_the_others_answer() {
    let r = crate::bounds::start().await;
    // The default range by hour: every DigitalOcean agent × every hour is over the source's
    // `max_upstream_calls` (250).
    let v = get(&r, "bucket=hour").await;
    assert_eq!(v["complete"], false, "{v}");
    let at = |k: &str| DateTime::parse_from_rfc3339(v["query"][k].as_str().unwrap()).unwrap();
    let hours = u64::try_from((at("end") - at("start")).num_hours()).unwrap();
    let agents = r.sims.data.digitalocean.agents().len() as u64;
    assert!(agents * hours > 250, "the setup must exceed the limit");

    let d = entry(&v, "do-prod");
    assert_eq!(d["status"], "error", "{d}");
    assert_eq!(d["error"]["type"], "urn:usage-gateway:problem:source_limit");
    assert_eq!(d["error"]["status"], 400);
    let detail = d["error"]["detail"].as_str().unwrap();
    for part in [
        format!(
            "needs {} vendor calls ({agents} agents × {hours} hourly windows)",
            agents * hours
        ),
        "above max_upstream_calls = 250 per query".to_owned(),
        "use bucket=day".to_owned(),
        format!("a range of at most {} hours", 250 / agents),
        format!(
            "at most {} agent{}",
            250 / hours,
            if 250 / hours == 1 { "" } else { "s" }
        ),
    ] {
        assert!(detail.contains(&part), "`{part}` missing from: {detail}");
    }
    for s in ["chatbotkit", "kibana-default", "kibana-marketing"] {
        assert_eq!(entry(&v, s)["status"], "ok", "{s}: {v}");
    }
    let rows = v["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|row| row["source"] != "do-prod"));
    assert_eq!(r.sims.digitalocean.calls("do.usage"), 0);

    // What the detail proposes fits: the same range by day answers from every source.
    let v = get(&r, "bucket=day").await;
    assert_eq!(v["complete"], true, "{:#}", v["sources"]);
}

#[actix_web::test]
async fn no_cache_reaches_the_providers_own_caches() {
    let r = crate::bounds::start().await;
    let q = format!("start={}&end={}&bucket=day", day(-3), day(0));
    let v = get(&r, &q).await;
    assert_eq!(v["complete"], true, "{:#}", v["sources"]);

    // ChatBotKit's quota runs out and Kibana answers truncated JSON.
    r.sims.chatbotkit.faults().force_limits_reached(1000);
    r.sims.kibana.faults().set_truncated(true);
    let (cbk, kibana) = (r.sims.chatbotkit.total_calls(), r.sims.kibana.total_calls());
    let mut refresh = HeaderMap::new();
    refresh.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let (status, _, v) = send(&r, &q, refresh, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["complete"], false, "{:#}", v["sources"]);
    assert!(
        r.sims.chatbotkit.total_calls() > cbk,
        "ChatBotKit was asked"
    );
    assert!(r.sims.kibana.total_calls() > kibana, "Kibana was asked");
    let c = entry(&v, "chatbotkit");
    assert_eq!(c["status"], "stale", "{c}");
    assert_eq!(
        c["error"]["type"],
        "urn:usage-gateway:problem:quota_exceeded"
    );
    for s in ["kibana-default", "kibana-marketing"] {
        let k = entry(&v, s);
        assert_eq!(k["status"], "stale", "{k}");
        assert_eq!(
            k["error"]["type"],
            "urn:usage-gateway:problem:upstream_decode"
        );
    }
    assert_eq!(entry(&v, "do-prod")["status"], "ok");
}

/// Asks `queries` in turn and checks that only the first sends requests to `route`, and that
/// every grouping gives the same totals.
async fn only_the_first_grouping_calls(
    r: &Running,
    queries: &[String],
    calls: impl Fn() -> u64,
) -> u64 {
    let before = calls();
    let mut first: Option<(u64, Value)> = None;
    for q in queries {
        let v = get(r, q).await;
        assert_eq!(v["complete"], true, "{q}: {:#}", v["sources"]);
        let sent = calls() - before;
        match &first {
            None => first = Some((sent, v["totals"].clone())),
            Some((n, totals)) => {
                assert_eq!(sent, *n, "{q} sent vendor requests again");
                assert_eq!(&v["totals"], totals, "{q}");
            }
        }
    }
    first.map_or(0, |(n, _)| n)
}

#[actix_web::test]
async fn groupings_of_one_range_share_the_vendor_requests() {
    let r = crate::bounds::start().await;
    let range = format!("start={}&end={}&bucket=day", day(-4), day(-1));
    let with = |filter: &str, groupings: &[&str]| -> Vec<String> {
        groupings
            .iter()
            .map(|g| format!("{range}&{filter}&group_by={g}"))
            .collect()
    };

    // DigitalOcean: one usage call per agent and day, whatever the grouping.
    let agents = r.sims.data.digitalocean.agents().len() as u64;
    let sent = only_the_first_grouping_calls(
        &r,
        &with("source=do-prod", &["source", "source,agent", "usage_type"]),
        || r.sims.digitalocean.calls("do.usage"),
    )
    .await;
    assert_eq!(sent, agents * 3);

    // ChatBotKit per-bot totals (a named bot): per bot, with or without `agent` grouped.
    let bot = &r.sims.data.chatbotkit.bots()[0].id;
    let sent = only_the_first_grouping_calls(
        &r,
        &with(
            &format!("source=chatbotkit&agent=chatbotkit/{bot}"),
            &["source", "source,agent"],
        ),
        || r.sims.chatbotkit.calls("cbk.bot_usage"),
    )
    .await;
    assert_eq!(sent, 3, "one per day");

    // ChatBotKit's record scan and Kibana's conversation walks serve every grouping.
    for (filter, groupings, sim, route) in [
        (
            "source=chatbotkit",
            ["source", "source,agent", "usage_type", "user"],
            &r.sims.chatbotkit,
            "cbk.usage_list",
        ),
        (
            "source=kibana-default",
            ["source", "source,agent", "user", "conversation"],
            &r.sims.kibana,
            "kibana.consumption",
        ),
    ] {
        let sent =
            only_the_first_grouping_calls(&r, &with(filter, &groupings), || sim.calls(route)).await;
        assert!(sent > 0, "{filter}");
    }

    // OpenAI and Anthropic: usage types are fields of every row, and usage is read by agent
    // and model whatever the grouping (their cost reports are allocated by agent and model), so
    // these groupings send the usage and cost requests once.
    for (filter, sim) in [
        ("source=openai", &r.sims.openai),
        ("source=anthropic", &r.sims.anthropic),
    ] {
        let groupings = ["source", "usage_type", "agent", "agent,usage_type,model"];
        let sent =
            only_the_first_grouping_calls(&r, &with(filter, &groupings), || sim.total_calls())
                .await;
        assert!(sent > 0, "{filter} {groupings:?}");
    }
}
