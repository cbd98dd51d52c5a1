//! Money in answers: `[[prices]]` applied to usage before it is grouped, a price change inside
//! the range (at midnight in the query's zone) pricing each side by its own price, currencies
//! never added together, unpriced usage reported, JSON and CSV agreeing, and bad price tables
//! refused at start naming the entry.

use serde_json::{Value, json};
use usage_gateway::config::Config;

use crate::common::*;

/// alpha (agents a1, a2; every hour from 2026-10-01T00:00Z: a1 10 in / 5 out, a2 1 in / 1
/// out) priced in USD per million tokens, 2000 until midnight in Berlin starting 2 October
/// (2026-10-01T22:00Z) and 3000 from then on; a1's output tokens in EUR (a more specific
/// entry); beta (Kibana kind) has no price.
fn priced_config() -> String {
    config_text("5s")
        + r#"
[[prices]]
source = "alpha"
per_million_tokens = "2000"
currency = "USD"
valid_to = "2026-10-02T00:00:00+02:00"

[[prices]]
source = "alpha"
per_million_tokens = "3000"
currency = "USD"
valid_from = "2026-10-02T00:00:00+02:00"

[[prices]]
source = "alpha"
agent = "a1"
counter = "output"
per_million_tokens = "10000"
currency = "eur"
"#
}

/// The `cost` of a row or totals entry as `currency → amount`.
fn cost_of(v: &Value) -> Vec<(String, String)> {
    v["cost"]
        .as_array()
        .unwrap_or_else(|| panic!("no cost in {v}"))
        .iter()
        .map(|m| {
            (
                m["currency"].as_str().unwrap().to_owned(),
                m["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pair(c: &str, a: &str) -> (String, String) {
    (c.to_owned(), a.to_owned())
}

#[actix_web::test]
async fn a_price_change_inside_the_range_prices_each_side_by_its_own_price() {
    let h = harness_from(&priced_config());
    let app = app(&h).await;
    let t = token("admin");
    // Two Berlin days: 22 hours of data before the change (00:00Z to 22:00Z on 1 October),
    // 24 after it.
    let q = "start=2026-10-01&end=2026-10-03&tz=Europe/Berlin&group_by=source,agent";
    let (status, _, body) = get(&app, &format!("/v1/usage?{q}"), Some(&t), &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v = json_of(&body);
    let rows = v["rows"].as_array().unwrap();
    let row = |agent: &str| {
        rows.iter()
            .find(|r| r["agent"] == agent)
            .unwrap_or_else(|| panic!("no row of {agent}: {v}"))
    };
    // a1: input (22 × 10 × 2000 + 24 × 10 × 3000) / 10⁶ = 0.44 + 0.72 USD; output 46 × 5 ×
    // 10000 / 10⁶ = 2.3 EUR. Priced at the window's start alone, input would be 0.92.
    assert_eq!(
        cost_of(row("a1")),
        [pair("EUR", "2.3000"), pair("USD", "1.1600")]
    );
    // a2: (22 × 2 × 2000 + 24 × 2 × 3000) / 10⁶.
    assert_eq!(cost_of(row("a2")), [pair("USD", "0.2320")]);
    assert!(row("a1").get("unpriced").is_none(), "{v}");
    // beta has no price: its row has no cost and says how much is unpriced (100 a day).
    assert_eq!(cost_of(row("b1")), []);
    assert_eq!(row("b1")["unpriced"], 200);
    // Totals per unit: currencies apart, the unpriced part named.
    let totals = &v["totals"][0];
    assert_eq!(totals["unit"], "tokens");
    assert_eq!(
        cost_of(totals),
        [pair("EUR", "2.3000"), pair("USD", "1.3920")]
    );
    assert_eq!(totals["unpriced"], 200);
    let sources: Vec<(&str, &str)> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["source"].as_str().unwrap(),
                s["cost_source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(sources, [("alpha", "price_table"), ("beta", "none")]);

    // Day buckets in Berlin: each day priced by its own price (the change is a bucket edge).
    let (_, _, body) = get(
        &app,
        &format!("/v1/usage?{q}&bucket=day&group_by=agent&agent=alpha/a2"),
        Some(&t),
        &[],
    )
    .await;
    let v = json_of(&body);
    let days: Vec<Vec<(String, String)>> =
        v["rows"].as_array().unwrap().iter().map(cost_of).collect();
    assert_eq!(
        days,
        [vec![pair("USD", "0.0880")], vec![pair("USD", "0.1440")]]
    );

    // CSV: one cost column per currency, the same amounts, and `unpriced`.
    let (status, _, body) = get(&app, &format!("/v1/usage.csv?{q}"), Some(&t), &[]).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "source,agent,agent_name,unit,input_tokens,output_tokens,other_tokens,total_tokens,cost_eur,cost_usd,unpriced",
            "alpha,a1,Support,tokens,460,230,0,690,2.3000,1.1600,0",
            "alpha,a2,Sales,tokens,46,46,0,92,,0.2320,0",
            "beta,b1,Ops,tokens,200,0,0,200,,,200",
        ]
    );
}

#[actix_web::test]
async fn usage_no_price_matches_is_reported_not_priced_at_zero() {
    let text = config_text("5s")
        + r#"
[[prices]]
source = "alpha"
agent = "a1"
per_million_tokens = "1"
currency = "USD"
"#;
    let h = harness_from(&text);
    let app = app(&h).await;
    let (_, _, body) = get(
        &app,
        &format!("/v1/usage?{RANGE}&group_by=agent&source=alpha"),
        Some(&token("admin")),
        &[],
    )
    .await;
    let v = json_of(&body);
    // a2 has no price: 96 hours × 2 tokens unpriced, said in its row, the totals and a note.
    let a2 = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agent"] == "a2")
        .unwrap();
    assert_eq!((cost_of(a2), &a2["unpriced"]), (vec![], &json!(192)));
    assert_eq!(v["totals"][0]["unpriced"], 192);
    assert_eq!(
        v["sources"][0]["notes"],
        json!([
            "no price in [[prices]] matches 192 tokens of this usage: counted in `unpriced`, not in `cost`"
        ])
    );
}

#[actix_web::test]
async fn answers_without_any_cost_carry_no_money_fields() {
    let h = harness("5s");
    let app = app(&h).await;
    let (_, _, body) = get(
        &app,
        &format!("/v1/usage?{RANGE}"),
        Some(&token("admin")),
        &[],
    )
    .await;
    let v = json_of(&body);
    assert!(v["rows"][0].get("cost").is_none(), "{v}");
    assert!(v["totals"][0].get("cost").is_none(), "{v}");
    assert_eq!(v["sources"][0]["cost_source"], "none");
}

#[test]
fn a_bad_price_table_is_refused_naming_each_entry() {
    let text = config_text("5s")
        + r#"
[[prices]]
source = "alpha"
per_million_tokens = "1"
currency = "USD"

[[prices]]
source = "alpha"
per_million_tokens = "2"
currency = "USD"
valid_from = "2026-10-02T00:00:00+02:00"

[[prices]]
source = "gamma"
per_million_tokens = "-1"
currency = "dollars"
"#;
    let Err(e) = Config::parse(&text, &|_| Some(SECRET.to_owned())) else {
        panic!("accepted");
    };
    let keys: Vec<&str> = e.errors.iter().map(|(k, _)| k.as_str()).collect();
    for k in [
        "prices[1]",
        "prices[2].currency",
        "prices[2].per_million_tokens",
    ] {
        assert!(keys.contains(&k), "{k} not in {:?}", e.errors);
    }
    let overlap = e.errors.iter().find(|(k, _)| k == "prices[1]").unwrap();
    assert!(overlap.1.contains("overlaps prices[0]"), "{}", overlap.1);

    // A provider the registry does not know and a source not configured are named too.
    let text = config_text("5s")
        + "[[prices]]\nprovider = \"aws\"\nsource = \"gamma\"\nper_million_tokens = \"1\"\ncurrency = \"USD\"\n";
    let config = Config::parse(&text, &|_| Some(SECRET.to_owned())).unwrap();
    let sources: Vec<usage_core::DynUsageProvider> =
        vec![std::sync::Arc::new(alpha()), std::sync::Arc::new(beta())];
    let Err(e) = usage_gateway::state::AppState::new(config, sources) else {
        panic!("accepted");
    };
    let keys: Vec<&str> = e.errors.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["prices[0].provider", "prices[0].source"]);
}
