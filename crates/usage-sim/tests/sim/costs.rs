//! The cost endpoints of the OpenAI and Anthropic simulators: amounts on the wire sum exactly
//! to the ground truth computed from the events, and validation.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{Duration, SecondsFormat};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use usage_core::money::Currency;
use usage_core::{UNATTRIBUTED_AGENT as UNATTRIBUTED, Window};
use usage_sim::{
    ANTHROPIC_ADMIN_KEY, ANTHROPIC_DEFAULT_WORKSPACE, ANTHROPIC_VERSION, OPENAI_ADMIN_KEY,
    TruthFilter, start_anthropic, start_openai,
};

use crate::common::{client, data, now, send};

#[derive(Deserialize)]
struct OaPage {
    data: Vec<OaBucket>,
    has_more: bool,
    next_page: Option<String>,
}

#[derive(Deserialize)]
struct OaBucket {
    start_time: i64,
    results: Vec<OaResult>,
}

#[derive(Deserialize)]
struct OaResult {
    amount: OaAmount,
    project_id: Option<String>,
    line_item: Option<String>,
}

#[derive(Deserialize)]
struct OaAmount {
    value: Box<RawValue>,
    currency: String,
}

fn usd(c: &usage_core::money::Costs) -> Decimal {
    c.iter()
        .find(|m| m.currency == Currency::USD)
        .map_or(Decimal::ZERO, |m| m.amount)
}

#[tokio::test]
async fn openai_costs_sum_exactly_to_the_truth_and_floats_would_not() {
    let d = data();
    let sim = start_openai(d.clone(), None).await.unwrap();
    let day = 86_400;
    let start = (now().timestamp() / day - 10) * day;
    let url = format!(
        "{}/v1/organization/costs?start_time={start}&end_time={}&limit=4&group_by[]=project_id&group_by[]=line_item",
        sim.base_url,
        start + 10 * day
    );
    // Exact and float sums per (day, project).
    let mut exact: BTreeMap<(i64, String), Decimal> = BTreeMap::new();
    let mut float: BTreeMap<(i64, String), f64> = BTreeMap::new();
    let mut page: Option<String> = None;
    let mut pages = 0;
    loop {
        let u = match &page {
            Some(p) => format!("{url}&page={p}"),
            None => url.clone(),
        };
        let body = client()
            .get(u)
            .bearer_auth(OPENAI_ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let p: OaPage = serde_json::from_str(&body).unwrap();
        pages += 1;
        for b in p.data {
            for r in b.results {
                assert_eq!(r.amount.currency, "usd");
                let item = r.line_item.unwrap();
                assert!(!item.is_empty());
                let project = r.project_id.unwrap_or_else(|| UNATTRIBUTED.to_owned());
                let text = r.amount.value.get();
                *exact.entry((b.start_time, project.clone())).or_default() +=
                    Decimal::from_str(text).unwrap();
                *float.entry((b.start_time, project)).or_default() += text.parse::<f64>().unwrap();
            }
        }
        if !p.has_more {
            break;
        }
        page = p.next_page;
    }
    assert_eq!(pages, 3, "10 days at 4 per page");
    let mut float_misses = 0;
    for ((t, project), sum) in &exact {
        let from = chrono::DateTime::from_timestamp(*t, 0).unwrap();
        let truth = d.openai.cost_truth(
            &TruthFilter::agent(project),
            Window::new(from, from + Duration::days(1)),
        );
        assert_eq!(*sum, usd(&truth), "{project} on {from}");
        if Decimal::from_f64_retain(float[&(*t, project.clone())]) != Some(*sum) {
            float_misses += 1;
        }
    }
    assert!(exact.len() > 10, "{}", exact.len());
    assert!(
        float_misses > 0,
        "a float parser must miss some sums of the simulator's amounts"
    );
    // Ungrouped: one row per day, the whole organization.
    let (s, _, v) = send(
        client()
            .get(format!(
                "{}/v1/organization/costs?start_time={start}&limit=1",
                sim.base_url
            ))
            .bearer_auth(OPENAI_ADMIN_KEY),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let row = &v["data"][0]["results"][0];
    assert_eq!(row["object"], "organization.costs.result");
    assert!(row["amount"]["value"].is_number(), "{row}");
    assert!(row["line_item"].is_null() && row["quantity"].is_null());
    sim.stop().await;
}

#[tokio::test]
async fn openai_costs_validate_like_the_contract() {
    let sim = start_openai(data(), None).await.unwrap();
    let start = (now().timestamp() / 86_400 - 3) * 86_400;
    for (q, param) in [
        (
            format!("start_time={start}&bucket_width=1h"),
            "bucket_width",
        ),
        (format!("start_time={start}&limit=181"), "limit"),
        (format!("start_time={start}&limit=0"), "limit"),
        (format!("start_time={start}&group_by=model"), "group_by"),
        (format!("start_time={start}&user_ids[]=u"), "user_ids"),
        (format!("start_time={start}&models=m"), "models"),
        ("limit=3".to_owned(), "start_time"),
    ] {
        let (s, _, e) = send(
            client()
                .get(format!("{}/v1/organization/costs?{q}", sim.base_url))
                .bearer_auth(OPENAI_ADMIN_KEY),
        )
        .await;
        assert_eq!(
            (s, e["error"]["param"].as_str()),
            (400, Some(param)),
            "{q}: {e}"
        );
        assert_eq!(e["error"]["type"], "invalid_request_error");
    }
    // 180 days in one page; filters by project.
    let (s, _, v) = send(
        client()
            .get(format!(
                "{}/v1/organization/costs?start_time={}&limit=180&project_ids[]=proj_none&group_by[]=project_id",
                sim.base_url,
                start - 100 * 86_400
            ))
            .bearer_auth(OPENAI_ADMIN_KEY),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["has_more"], false);
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["results"].as_array().unwrap().is_empty())
    );
    assert_eq!(sim.calls("openai.costs"), 8);
    sim.stop().await;
}

#[tokio::test]
async fn anthropic_cost_report_sums_exactly_to_the_truth() {
    let d = data();
    let sim = start_anthropic(d.clone(), None).await.unwrap();
    let first = (now() - Duration::days(12))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let last = first + Duration::days(10);
    let t = |x: chrono::DateTime<chrono::Utc>| x.to_rfc3339_opts(SecondsFormat::Secs, true);
    let get = |q: String| {
        send(
            client()
                .get(format!("{}/v1/organizations/cost_report?{q}", sim.base_url))
                .header("x-api-key", ANTHROPIC_ADMIN_KEY)
                .header("anthropic-version", ANTHROPIC_VERSION),
        )
    };
    let base = format!(
        "starting_at={}&ending_at={}&group_by[]=workspace_id&group_by[]=description&limit=6",
        t(first),
        t(last)
    );
    let mut sums: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    let mut page: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &page {
            Some(p) => format!("{base}&page={p}"),
            None => base.clone(),
        };
        let (s, _, v) = get(q).await;
        assert_eq!(s, 200, "{v}");
        pages += 1;
        for b in v["data"].as_array().unwrap() {
            for r in b["results"].as_array().unwrap() {
                assert_eq!(r["currency"], "USD");
                let cents = Decimal::from_str(r["amount"].as_str().unwrap()).unwrap();
                assert!(r["description"].is_string());
                match r["cost_type"].as_str().unwrap() {
                    "tokens" => assert!(r["model"].is_string() && r["token_type"].is_string()),
                    "web_search" => assert!(r["model"].is_null() && r["token_type"].is_null()),
                    other => panic!("{other}"),
                }
                let ws = r["workspace_id"]
                    .as_str()
                    .unwrap_or(ANTHROPIC_DEFAULT_WORKSPACE)
                    .to_owned();
                *sums
                    .entry((b["starting_at"].as_str().unwrap().to_owned(), ws))
                    .or_default() += cents / Decimal::ONE_HUNDRED;
            }
        }
        if v["has_more"] != true {
            break;
        }
        page = v["next_page"].as_str().map(str::to_owned);
    }
    assert_eq!(pages, 2);
    assert!(sums.len() > 10);
    for ((at, ws), sum) in &sums {
        let from = chrono::DateTime::parse_from_rfc3339(at).unwrap().to_utc();
        let truth = d.anthropic.cost_truth(
            &TruthFilter::agent(ws),
            Window::new(from, from + Duration::days(1)),
        );
        assert_eq!(*sum, usd(&truth), "{ws} on {at}");
    }
    // Validation.
    for q in [
        format!("starting_at={}&limit=32", t(first)),
        format!("starting_at={}&bucket_width=1h", t(first)),
        format!("starting_at={}&group_by[]=model", t(first)),
        format!("starting_at={}&workspace_ids[]=x", t(first)),
        "limit=3".to_owned(),
    ] {
        let (s, _, e) = get(q.clone()).await;
        assert_eq!(
            (s, e["error"]["type"].as_str()),
            (400, Some("invalid_request_error")),
            "{q}: {e}"
        );
    }
    sim.stop().await;
}
