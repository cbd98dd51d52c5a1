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
    // A source skipped by a filter it cannot apply has no cost.
    let (_, _, body) = get(&app, &format!("/v1/usage?{q}&user=alice"), Some(&t), &[]).await;
    let v = json_of(&body);
    assert_eq!(v["sources"][1]["status"], "skipped");
    assert_eq!(v["sources"][1]["cost_source"], "none");

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

/// The FOCUS columns every cost-and-usage dataset must have (FOCUS 1.2, and the validator's
/// `CostAndUsage-D-0xx-M` rules), with those this export adds.
const FOCUS_MANDATORY: [&str; 21] = [
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
];

/// Parses a FOCUS body and checks every line against the specification's column types: ASCII
/// strings, decimals with a point, `YYYY-MM-DDTHH:MM:SSZ` instants, ISO currencies, the
/// allowed enums, a JSON object in `Tags`; returns the lines as column → value.
pub(crate) fn focus_lines(body: &[u8]) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut r = csv::Reader::from_reader(body);
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    for c in FOCUS_MANDATORY.iter().chain(&[
        "ChargeFrequency",
        "ConsumedQuantity",
        "ConsumedUnit",
        "ResourceId",
        "ResourceName",
        "ServiceSubcategory",
        "Tags",
    ]) {
        assert!(header.iter().any(|h| h == c), "no column {c} in {header:?}");
    }
    let decimal = |v: &str| v.contains('.') && v.parse::<f64>().is_ok() && !v.contains(['e', 'E']);
    let instant = |v: &str| {
        v.len() == 20 && v.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(v).is_ok()
    };
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.unwrap();
        let line: std::collections::BTreeMap<String, String> = header
            .iter()
            .cloned()
            .zip(rec.iter().map(str::to_owned))
            .collect();
        for (k, v) in &line {
            assert!(v.is_ascii(), "{k} = {v:?} is not ASCII");
        }
        for k in [
            "BilledCost",
            "EffectiveCost",
            "ListCost",
            "ContractedCost",
            "ConsumedQuantity",
            "PricingQuantity",
        ] {
            assert!(decimal(&line[k]), "{k} = {:?} is not a decimal", line[k]);
        }
        for k in [
            "BillingPeriodStart",
            "BillingPeriodEnd",
            "ChargePeriodStart",
            "ChargePeriodEnd",
        ] {
            assert!(instant(&line[k]), "{k} = {:?}", line[k]);
        }
        assert!(line["ChargePeriodStart"] < line["ChargePeriodEnd"]);
        // A charge lies within its billing period (the UTC month).
        assert!(
            line["BillingPeriodStart"] <= line["ChargePeriodStart"],
            "{line:?}"
        );
        assert!(
            line["ChargePeriodEnd"] <= line["BillingPeriodEnd"],
            "{line:?}"
        );
        let currency = &line["BillingCurrency"];
        assert!(
            currency.len() == 3 && currency.chars().all(|c| c.is_ascii_uppercase()),
            "{currency}"
        );
        assert_eq!(line["ChargeCategory"], "Usage");
        assert_eq!(line["ChargeClass"], "");
        assert_eq!(line["ChargeFrequency"], "Usage-Based");
        assert_eq!(line["ServiceCategory"], "AI and Machine Learning");
        assert_eq!(line["ServiceSubcategory"], "Generative AI");
        for k in [
            "BillingAccountId",
            "ChargeDescription",
            "InvoiceIssuerName",
            "ProviderName",
            "PublisherName",
            "ServiceName",
            "ConsumedUnit",
            "PricingUnit",
        ] {
            assert!(!line[k].is_empty(), "{k} is empty");
        }
        assert_eq!(line["BilledCost"], line["EffectiveCost"]);
        assert!(
            serde_json::from_str::<Value>(&line["Tags"])
                .unwrap()
                .is_object()
        );
        out.push(line);
    }
    out
}

#[actix_web::test]
async fn the_focus_export_has_the_same_costs_as_json_and_csv() {
    let h = harness_from(&priced_config());
    let app = app(&h).await;
    let t = token("admin");
    let q = "start=2026-10-01&end=2026-10-03&tz=Europe/Berlin&group_by=agent&bucket=day";
    let (status, headers, body) = get(&app, &format!("/v1/usage/focus?{q}"), Some(&t), &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        headers.get("content-type").unwrap(),
        "text/csv; charset=utf-8"
    );
    assert_eq!(
        headers.get("content-disposition").unwrap(),
        "attachment; filename=\"usage-20260930T220000Z-20261002T220000Z-focus.csv\""
    );
    // beta has no price: its 200 tokens are no charge, and are said in a header.
    assert_eq!(headers.get("x-usage-unpriced").unwrap(), "200 tokens");
    let lines = focus_lines(&body);
    // Two days × (a1 in USD and EUR, a2 in USD); beta's rows have no cost.
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let a1 = &lines[0];
    assert_eq!(a1["BillingAccountId"], "alpha");
    assert_eq!(a1["ProviderName"], "DigitalOcean");
    assert_eq!(a1["ServiceName"], "DigitalOcean Gen AI Platform");
    assert_eq!(a1["ResourceId"], "alpha/a1");
    assert_eq!(a1["ResourceName"], "Support");
    // Berlin's 1 October starts on 30 September in UTC: its two hours of September are a part of
    // their own (no usage, no line), so the line is charged within October.
    assert_eq!(a1["ChargePeriodStart"], "2026-10-01T00:00:00Z");
    assert_eq!(a1["ChargePeriodEnd"], "2026-10-01T22:00:00Z");
    assert_eq!(a1["BillingPeriodStart"], "2026-10-01T00:00:00Z");
    assert_eq!(a1["BillingPeriodEnd"], "2026-11-01T00:00:00Z");
    assert_eq!(a1["ConsumedUnit"], "Tokens");
    assert_eq!(
        serde_json::from_str::<Value>(&a1["Tags"]).unwrap(),
        json!({"source": "alpha", "agent": "a1", "agent_name": "Support"})
    );
    // The sums per currency are the JSON totals; each line's amount rounds to its CSV cell.
    let (_, _, body) = get(&app, &format!("/v1/usage?{q}"), Some(&t), &[]).await;
    let v = json_of(&body);
    let mut sums: std::collections::BTreeMap<String, rust_decimal::Decimal> =
        std::collections::BTreeMap::new();
    for l in &lines {
        *sums.entry(l["BillingCurrency"].clone()).or_default() +=
            l["BilledCost"].parse::<rust_decimal::Decimal>().unwrap();
    }
    let shown: Vec<(String, String)> = sums
        .iter()
        .map(|(c, a)| (c.clone(), format!("{:.4}", a.round_dp(4))))
        .collect();
    assert_eq!(shown, cost_of(&v["totals"][0]));
    // (a2's first day: 22 hours × 2 tokens × 2000 per million, exactly.)
    assert!(
        lines
            .iter()
            .any(|l| l["ResourceId"] == "alpha/a2" && l["BilledCost"] == "0.088"),
        "{lines:#?}"
    );
    // A range across a month's end (Berlin's 30 September to 3 October, unbucketed): each line
    // is charged within one UTC month, so the September part (no usage) has no line.
    let (_, _, body) = get(
        &app,
        "/v1/usage/focus?start=2026-09-30&end=2026-10-03&tz=Europe/Berlin&group_by=agent",
        Some(&t),
        &[],
    )
    .await;
    let across = focus_lines(&body);
    assert_eq!(across.len(), 3, "{across:#?}");
    assert!(
        across
            .iter()
            .all(|l| l["ChargePeriodStart"] == "2026-10-01T00:00:00Z"
                && l["ChargePeriodEnd"] == "2026-10-02T22:00:00Z")
    );
    // `format=focus` on /v1/usage answers the same; another format on /v1/usage/focus is a 400.
    let (_, _, again) = get(&app, &format!("/v1/usage?{q}&format=focus"), Some(&t), &[]).await;
    assert_eq!(focus_lines(&again), lines);
    let (status, _, body) = get(
        &app,
        &format!("/v1/usage/focus?{q}&format=csv"),
        Some(&t),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(json_of(&body)["errors"][0]["parameter"], "format");
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

/// The USD cost of an answer's totals, added over units.
fn total_usd(v: &Value) -> rust_decimal::Decimal {
    v["totals"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["cost"].as_array().unwrap().iter().map(|m| usd(m).amount))
        .sum()
}

/// Rows of one bucket and labels: (source, bucket, agent, model).
type CostKey = (String, usage_core::Window, Option<String>, Option<String>);

/// The amount of a JSON `{"amount", "currency"}` in USD.
fn usd(v: &Value) -> usage_core::money::Money {
    assert_eq!(v["currency"], "USD", "{v}");
    usage_core::money::Money::from_major(
        v["amount"].as_str().unwrap(),
        usage_core::money::Currency::USD,
    )
    .unwrap()
}

#[actix_web::test]
async fn openai_and_anthropic_costs_come_from_their_cost_reports() {
    use std::collections::BTreeMap;

    use usage_core::Window;
    use usage_core::money::{Currency, Money};
    use usage_sim::TruthFilter;

    let r = crate::vendors::start_with(2000).await;
    let day =
        |d: u32| chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 10, d, 0, 0, 0).unwrap();
    let truth = |source: &str, f: &TruthFilter, w: Window| {
        let costs = match source {
            "openai" => r.data.openai.cost_truth(f, w),
            _ => r.data.anthropic.cost_truth(f, w),
        };
        costs
            .iter()
            .find(|m| m.currency == Currency::USD)
            .unwrap_or(Money {
                amount: rust_decimal::Decimal::ZERO,
                currency: Currency::USD,
            })
    };
    // Half a cent of a hundredth: each shown amount is rounded to four places.
    let half = Money::from_major("0.00005", Currency::USD).unwrap().amount;
    let mut compared = 0;
    for group_by in ["source", "source,agent", "source,agent,model"] {
        for bucket in ["none", "day"] {
            let q = format!(
                "start=2026-10-24&end=2026-10-27&tz=UTC&bucket={bucket}&group_by={group_by}\
                 &source=openai,anthropic"
            );
            let v = crate::common::usage_json(&r.base, &r.token, &q).await;
            assert_eq!(v["complete"], true, "{q}: {:#}", v["sources"]);
            for s in v["sources"].as_array().unwrap() {
                assert_eq!(s["cost_source"], "vendor", "{q}: {s}");
            }
            // Rows of one bucket and labels (one per unit) add up to the vendor's cost.
            let mut sums: BTreeMap<CostKey, Vec<Money>> = BTreeMap::new();
            for row in v["rows"].as_array().unwrap() {
                let window = if bucket == "none" {
                    Window::new(day(24), day(27))
                } else {
                    let at = |k: &str| {
                        chrono::DateTime::parse_from_rfc3339(row[k].as_str().unwrap())
                            .unwrap()
                            .with_timezone(&chrono::Utc)
                    };
                    Window::new(at("bucket_start"), at("bucket_end"))
                };
                let label = |k: &str| row[k].as_str().map(str::to_owned);
                let key = (
                    label("source").unwrap(),
                    window,
                    label("agent"),
                    label("model"),
                );
                let entry = sums.entry(key).or_default();
                entry.extend(row["cost"].as_array().unwrap().iter().map(usd));
            }
            assert!(!sums.is_empty(), "{q}");
            for ((source, window, agent, model), amounts) in &sums {
                // A null model (usage of no model) cannot be asked of the truth alone.
                if group_by.ends_with("model") && model.is_none() {
                    continue;
                }
                let f = TruthFilter {
                    agent: agent.clone(),
                    model: model.clone(),
                    ..TruthFilter::default()
                };
                let want = truth(source, &f, *window);
                let got: rust_decimal::Decimal = amounts.iter().map(|m| m.amount).sum();
                let n = rust_decimal::Decimal::from(amounts.len().max(1));
                assert!(
                    (got - want.amount).abs() <= half * n,
                    "{q}: {source} {window:?} {agent:?} {model:?}: {got} vs {}",
                    want.amount
                );
                if amounts.len() == 1 {
                    assert_eq!(amounts[0].display_amount(), want.display_amount(), "{q}");
                }
                compared += 1;
            }
        }
    }
    assert!(compared > 30, "{compared}");

    // Finer groupings get each day's cost of an agent, model and unit allocated by quantity:
    // the totals are the same whatever the grouping, and a note says so.
    let span = "start=2026-10-24&end=2026-10-27&tz=UTC&source=openai,anthropic&bucket=day";
    let plain = crate::common::usage_json(&r.base, &r.token, &format!("{span}&group_by=")).await;
    for group_by in ["source,user", "usage_type", "agent,model,user,usage_type"] {
        let v =
            crate::common::usage_json(&r.base, &r.token, &format!("{span}&group_by={group_by}"))
                .await;
        assert_eq!(v["totals"], plain["totals"], "{group_by}");
        for s in v["sources"].as_array().unwrap() {
            assert_eq!(s["cost_source"], "vendor", "{group_by}: {s}");
            assert!(
                s["notes"].to_string().contains("allocated in proportion"),
                "{s}"
            );
        }
    }
    // Each UTC day's cost is shared out over that day's usage: a user's cost over three days
    // is the sum of their three daily costs (not the range's cost by their share of the range).
    let per_user = |bucket: &'static str| {
        let (base, token) = (r.base.clone(), r.token.clone());
        async move {
            let v = crate::common::usage_json(
                &base,
                &token,
                &format!(
                    "start=2026-10-24&end=2026-10-27&tz=UTC&source=anthropic&group_by=user&bucket={bucket}"
                ),
            )
            .await;
            let mut sums: BTreeMap<String, (rust_decimal::Decimal, u32)> = BTreeMap::new();
            for row in v["rows"].as_array().unwrap() {
                let user = row["user"].as_str().unwrap_or("(none)").to_owned();
                for m in row["cost"].as_array().unwrap() {
                    let e = sums.entry(user.clone()).or_default();
                    e.0 += usd(m).amount;
                    e.1 += 1;
                }
            }
            sums
        }
    };
    let (whole, daily) = (per_user("none").await, per_user("day").await);
    assert_eq!(
        whole.keys().collect::<Vec<_>>(),
        daily.keys().collect::<Vec<_>>()
    );
    for (user, (amount, _)) in &whole {
        let (sum, n) = daily[user];
        assert!(
            (sum - amount).abs() <= half * rust_decimal::Decimal::from(n + 1),
            "{user}: {amount} over the range, {sum} by day"
        );
    }

    // Up to now: the current day's cost so far is its usage's cost so far, so a query ending
    // now keeps the vendor's costs (the simulators' data ends on 1 November).
    for source in ["openai", "anthropic"] {
        let v = crate::common::usage_json(
            &r.base,
            &r.token,
            &format!("start=2026-10-30&end=now&tz=UTC&source={source}&group_by="),
        )
        .await;
        assert_eq!(v["sources"][0]["cost_source"], "vendor", "{}", v["sources"]);
        let got = total_usd(&v);
        let want = truth(
            source,
            &TruthFilter::default(),
            Window::new(day(30), day(31) + chrono::Duration::days(2)),
        )
        .amount;
        let n = rust_decimal::Decimal::from(v["totals"].as_array().unwrap().len());
        assert!((got - want).abs() <= half * n, "{source}: {got} vs {want}");
    }

    // A model filter is applied to the vendor's costs here: exactly that model's cost.
    let v = crate::common::usage_json(
        &r.base,
        &r.token,
        "start=2026-10-24&end=2026-10-27&tz=UTC&source=anthropic&group_by=&model=claude-opus-4-6",
    )
    .await;
    let got = total_usd(&v);
    let f = TruthFilter {
        model: Some("claude-opus-4-6".into()),
        ..TruthFilter::default()
    };
    let want = truth("anthropic", &f, Window::new(day(24), day(27))).amount;
    assert!(
        (got - want).abs() <= half * rust_decimal::Decimal::from(2),
        "{got} vs {want}"
    );
    assert!(want > rust_decimal::Decimal::ONE, "{want}");

    // Queries the cost reports cannot answer say why; the demo has no OpenAI or Anthropic
    // prices, so their cost is none.
    for (q, why) in [
        ("tz=Europe/Berlin&group_by=source", "per UTC day"),
        ("tz=UTC&group_by=source&bucket=hour", "per UTC day"),
        ("tz=UTC&group_by=source&user=nobody", "user filter"),
    ] {
        let v = crate::common::usage_json(
            &r.base,
            &r.token,
            &format!("start=2026-10-24&end=2026-10-27&{q}&source=openai,anthropic"),
        )
        .await;
        for s in v["sources"].as_array().unwrap() {
            assert_eq!(s["cost_source"], "none", "{q}: {s}");
            let notes = s["notes"].to_string();
            assert!(notes.contains(why), "{q}: {notes}");
        }
        // No touched source has a cost: no money fields at all.
        assert!(
            v["totals"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t.get("cost").is_none()),
            "{q}"
        );
    }
}

/// The priced configuration with budgets over alpha (USD), agent a1 (EUR), user alice and
/// everything.
fn budget_config() -> String {
    priced_config()
        + r#"
[[budgets]]
name = "alpha-usd"
source = "alpha"
amount = "10"
currency = "USD"

[[budgets]]
name = "a1-eur"
agent = "alpha/a1"
amount = "5"
currency = "EUR"

[[budgets]]
name = "alice"
user = "alice"
amount = "1"
currency = "USD"

[[budgets]]
name = "everything"
amount = "100"
currency = "USD"
"#
}

#[actix_web::test]
async fn budgets_count_the_month_so_far_and_forecast_it() {
    use usage_gateway::budgets::evaluate;

    let h = harness_from(&budget_config());
    let state = h.state.clone();
    // 2 October 12:00 UTC: the month so far is 1 and 2 October (to the end of today), 48
    // hours of alpha's data, priced 2000 per million before 22:00Z on the 1st, 3000 after.
    let now = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 10, 2, 12, 0, 0).unwrap();
    let by_name = |n: &str| state.budgets.iter().find(|b| b.name == n).unwrap();
    let b = evaluate(&state, by_name("alpha-usd"), now).await;
    assert_eq!(b.error.as_ref().map(|e| e.detail.clone()), None);
    assert_eq!(
        (b.period_start.as_str(), b.period_end.as_str()),
        ("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z")
    );
    // a1 input (22 × 10 × 2000 + 26 × 10 × 3000) / 10⁶ = 1.22, a2 (22 × 2 × 2000 + 26 × 2 ×
    // 3000) / 10⁶ = 0.244; a1's output is priced in EUR: not counted, said in a note.
    assert_eq!(b.spent.display_amount(), "1.4640");
    assert!((b.spent_ratio - 0.1464).abs() < 1e-9, "{}", b.spent_ratio);
    // 36 hours of a 744-hour month: 1.464 × 744 / 36.
    assert_eq!(b.forecast.unwrap().display_amount(), "30.2560");
    assert!((b.forecast_ratio.unwrap() - 3.0256).abs() < 1e-9);
    assert!(b.complete);
    assert_eq!(
        b.notes,
        ["cost in other currencies is not counted: 2.4000 EUR"]
    );

    let b = evaluate(&state, by_name("a1-eur"), now).await;
    assert_eq!(b.spent.display_amount(), "2.4000");
    assert!((b.spent_ratio - 0.48).abs() < 1e-9);

    // alice (a1, even hours): 11 hours before the change, 13 after, 10 input tokens each.
    let b = evaluate(&state, by_name("alice"), now).await;
    assert_eq!(b.spent.display_amount(), "0.6100");
    // beta has no users: skipped, so the spend is complete only for sources that have users.
    assert_eq!(b.sources.len(), 2);

    // Everything: beta's usage has no price, so the spend is a lower bound.
    let b = evaluate(&state, by_name("everything"), now).await;
    assert_eq!(b.spent.display_amount(), "1.4640");
    assert!(!b.complete);
    assert_eq!(b.unpriced.get("tokens"), Some(&200));
}

#[actix_web::test]
async fn get_budgets_shows_what_the_caller_may_see_and_sets_the_gauges() {
    let h = harness_from(&budget_config());
    let app = app(&h).await;
    let names = |body: &[u8]| -> Vec<String> {
        json_of(body)["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, _, body) = get(&app, "/v1/budgets", Some(&token("admin")), &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(names(&body), ["alpha-usd", "a1-eur", "alice", "everything"]);
    let v = json_of(&body);
    let first = &v["budgets"][0];
    assert_eq!(
        first["amount"],
        json!({"amount": "10.0000", "currency": "USD"})
    );
    assert_eq!(first["spent"]["currency"], "USD");
    assert_eq!(first["sources"][0]["source"], "alpha");
    // team cx sees alpha only: not the budgets over every source (alice's counts every source).
    let (_, _, body) = get(&app, "/v1/budgets", Some(&team_token("cx")), &[]).await;
    assert_eq!(names(&body), ["alpha-usd", "a1-eur"]);
    let (_, _, body) = get(&app, "/v1/budgets", Some(&team_token("cx-narrow")), &[]).await;
    assert_eq!(names(&body), ["a1-eur"]);
    let (_, _, body) = get(&app, "/v1/budgets", Some(&team_token("ops")), &[]).await;
    assert!(names(&body).is_empty());
    let (status, _, _) = get(&app, "/v1/budgets", None, &[]).await;
    assert_eq!(status, 401);
    // The gauges, for alerting.
    let (_, _, body) = get(&app, "/metrics", None, &[]).await;
    let text = String::from_utf8(body).unwrap();
    for name in ["alpha-usd", "a1-eur", "alice", "everything"] {
        assert!(
            text.contains(&format!(
                "usage_gateway_budget_spent_ratio{{budget=\"{name}\"}}"
            )),
            "{name}"
        );
    }
    assert!(text.contains("usage_gateway_budget_complete{budget=\"everything\"}"));
}

#[test]
fn bad_budgets_are_refused_naming_each_entry() {
    let text = config_text("5s")
        + r#"
[[budgets]]
name = "a"
amount = "0"
currency = "USD"

[[budgets]]
name = "a"
agent = "a1"
amount = "5"
currency = "EURO"
tz = "Mars/Base"
"#;
    let Err(e) = Config::parse(&text, &|_| Some(SECRET.to_owned())) else {
        panic!("accepted");
    };
    let keys: Vec<&str> = e.errors.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "budgets[0].amount",
            "budgets[1].name",
            "budgets[1].currency",
            "budgets[1].tz",
            "budgets[1].agent"
        ],
        "{:?}",
        e.errors
    );
    let text = config_text("5s")
        + "[[budgets]]\nname = \"g\"\nagent = \"gamma/x\"\namount = \"5\"\ncurrency = \"USD\"\n";
    let config = Config::parse(&text, &|_| Some(SECRET.to_owned())).unwrap();
    let sources: Vec<usage_core::DynUsageProvider> =
        vec![std::sync::Arc::new(alpha()), std::sync::Arc::new(beta())];
    let Err(e) = usage_gateway::state::AppState::new(config, sources) else {
        panic!("accepted");
    };
    assert_eq!(e.errors[0].0, "budgets[0].agent");
}

#[actix_web::test]
async fn a_scrape_of_metrics_brings_the_budget_gauges_up_to_date() {
    let text = priced_config()
        + "[[budgets]]\nname = \"scraped-only\"\nsource = \"alpha\"\namount = \"1\"\ncurrency = \"USD\"\n";
    let h = harness_from(&text);
    let app = app(&h).await;
    let gauge = "usage_gateway_budget_spent_ratio{budget=\"scraped-only\"}";
    // The first scrape starts the evaluation in the background and shows what was there.
    let (_, _, body) = get(&app, "/metrics", None, &[]).await;
    assert!(!String::from_utf8(body).unwrap().contains(gauge));
    let mut seen = false;
    for _ in 0..100 {
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
        let (_, _, body) = get(&app, "/metrics", None, &[]).await;
        if String::from_utf8(body).unwrap().contains(gauge) {
            seen = true;
            break;
        }
    }
    assert!(seen, "no {gauge} after the scrapes");
}
