//! OpenAI and Anthropic through the whole gateway: for every grouping of their dimensions
//! (agent, user, model, usage type), every bucket and three zones (UTC; Berlin across the end
//! of summer time; Kolkata, half an hour off UTC), each row and each bucket's total per unit
//! equal the simulators' held-out ground truth, and `sources[]` says which vendor bucket width
//! was read.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use usage_core::{Counters, Dimension, Unit, Window};
use usage_gateway::auth::mint_dev_token;
use usage_gateway::demo::demo_values;
use usage_gateway::registry::build_providers;
use usage_gateway::state::AppState;
use usage_sim::{DataSpec, Dataset, TruthFilter};

/// The simulators' data ends here; the queries look at the days before the end of summer time
/// in Berlin (2026-10-25).
fn data_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
}

pub(crate) struct Running {
    pub base: String,
    pub token: String,
    pub data: Arc<Dataset>,
}

/// The demo configuration over all simulators, live (no store), with the OpenAI and Anthropic
/// budgets raised: the test sends each grouping's vendor requests anew.
pub(crate) async fn start_with(max_upstream_calls: u32) -> Running {
    let data = Arc::new(Dataset::generate(&DataSpec::small(data_now())));
    let sims = usage_sim::Simulators {
        digitalocean: usage_sim::start_digitalocean(
            data.clone(),
            usage_sim::DoOptions::default(),
            None,
        )
        .await
        .unwrap(),
        kibana: usage_sim::start_kibana(data.clone(), None).await.unwrap(),
        chatbotkit: usage_sim::start_chatbotkit(data.clone(), None)
            .await
            .unwrap(),
        openai: usage_sim::start_openai(data.clone(), None).await.unwrap(),
        anthropic: usage_sim::start_anthropic_with(
            data.clone(),
            usage_sim::AnthropicOptions {
                rate_limit_per_minute: 0,
                ..usage_sim::AnthropicOptions::default()
            },
            None,
        )
        .await
        .unwrap(),
        data: data.clone(),
    };
    let values = demo_values(
        &sims,
        "127.0.0.1:0".parse().unwrap(),
        "vendors-secret-0123456789abcdef0123456789",
        "unused.sqlite",
    );
    let raised =
        format!("rate_limit_per_minute = 10000\nmax_upstream_calls = {max_upstream_calls}\n");
    // OpenAI's and Anthropic's lines (the same in the demo).
    let text = usage_gateway::demo::DEMO_CONFIG.replace(
        "rate_limit_per_minute = 600\nmax_upstream_calls = 200\n",
        &raised,
    );
    assert_eq!(
        text.matches(&format!("max_upstream_calls = {max_upstream_calls}"))
            .count(),
        2
    );
    let config = usage_gateway::config::Config::parse(&text, &|k| values.get(k).cloned()).unwrap();
    let token = mint_dev_token(&config.auth, "demo", Utc::now().timestamp()).unwrap();
    let providers = build_providers(&config).unwrap();
    let state = AppState::new(config, providers).unwrap();
    let bound = usage_gateway::server::bind(state).unwrap();
    let base = format!("http://{}", bound.addr);
    actix_web::rt::spawn(bound.run());
    // The simulators live as long as the test's runtime.
    std::mem::forget(sims);
    Running { base, token, data }
}

/// The ground truth of `source` for a filter and window, per unit.
fn truth(data: &Dataset, source: &str, f: &TruthFilter, w: Window) -> BTreeMap<Unit, Counters> {
    match source {
        "openai" => data.openai.truth(f, w),
        "anthropic" => data.anthropic.truth(f, w),
        other => panic!("no truth for {other}"),
    }
}

fn instant(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[actix_web::test]
async fn every_grouping_bucket_and_zone_equals_the_ground_truth() {
    let r = start_with(2000).await;
    let dims = [
        Dimension::Agent,
        Dimension::User,
        Dimension::Model,
        Dimension::UsageType,
    ];
    let cases = [
        ("UTC", "2026-10-24", "2026-10-27", "1d", "1h"),
        ("Europe/Berlin", "2026-10-24", "2026-10-27", "1h", "1h"),
        ("Asia/Kolkata", "2026-10-24", "2026-10-26", "1m", "1m"),
    ];
    let mut rows_checked = 0;
    for (tz, start, end, day_width, hour_width) in cases {
        for bucket in ["none", "day", "hour"] {
            for mask in 0..16u8 {
                let kept: Vec<Dimension> = dims
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, d)| *d)
                    .collect();
                let group_by: Vec<&str> = std::iter::once("source")
                    .chain(kept.iter().map(|d| d.as_str()))
                    .collect();
                let q = format!(
                    "start={start}&end={end}&tz={tz}&bucket={bucket}&group_by={}\
                     &source=openai,anthropic",
                    group_by.join(",")
                );
                let v = crate::common::usage_json(&r.base, &r.token, &q).await;
                assert_eq!(v["complete"], true, "{q}: {:#}", v["sources"]);
                let range = Window::new(instant(&v["query"]["start"]), instant(&v["query"]["end"]));
                // The width the vendors were asked for: the coarsest that fits every edge.
                let want_width = if bucket == "hour" {
                    hour_width
                } else {
                    day_width
                };
                for s in v["sources"].as_array().unwrap() {
                    assert_eq!(s["vendor_bucket_width"], want_width, "{q}: {s}");
                }
                // Each bucket's total per unit and source.
                let mut per_bucket: BTreeMap<(String, Window, String), Counters> = BTreeMap::new();
                for row in v["rows"].as_array().unwrap() {
                    let window = if bucket == "none" {
                        range
                    } else {
                        Window::new(instant(&row["bucket_start"]), instant(&row["bucket_end"]))
                    };
                    let source = row["source"].as_str().unwrap().to_owned();
                    let unit = row["unit"].as_str().unwrap().to_owned();
                    let got = crate::common::counters_of(row);
                    per_bucket
                        .entry((source.clone(), window, unit.clone()))
                        .or_default()
                        .add(&got);
                    // Each row whose kept labels are all known: its own truth. (A label the
                    // vendor left null — Console usage has no API key — cannot be asked of the
                    // truth; those rows are covered by the bucket totals.)
                    let label = |d: Dimension| row[d.as_str()].as_str().map(str::to_owned);
                    if kept.iter().any(|d| label(*d).is_none()) {
                        continue;
                    }
                    let filter = TruthFilter {
                        agent: label(Dimension::Agent),
                        user: label(Dimension::User),
                        model: label(Dimension::Model),
                        usage_type: label(Dimension::UsageType),
                        ..TruthFilter::default()
                    };
                    let unit = Unit::parse(&unit).unwrap();
                    let want = truth(&r.data, &source, &filter, window)
                        .get(&unit)
                        .copied()
                        .unwrap_or_default();
                    assert_eq!(got, want, "{q}: {row}");
                    rows_checked += 1;
                }
                for ((source, window, unit), got) in &per_bucket {
                    let want = truth(&r.data, source, &TruthFilter::default(), *window)
                        .get(&Unit::parse(unit).unwrap())
                        .copied()
                        .unwrap_or_default();
                    assert_eq!(*got, want, "{q}: {source} {window:?} {unit}");
                }
                // And no usage the truth has is missing from the rows.
                let total = |s: &str| {
                    truth(&r.data, s, &TruthFilter::default(), range)
                        .values()
                        .map(Counters::total)
                        .sum::<u64>()
                };
                let rows_total: u64 = per_bucket.values().map(Counters::total).sum();
                assert_eq!(rows_total, total("openai") + total("anthropic"), "{q}");
            }
        }
    }
    assert!(rows_checked > 1000, "{rows_checked}");
}

/// A query needing more requests than `max_upstream_calls` is that source's `source_limit`
/// error, worded by the provider in its own terms (request ranges × report endpoints), while the
/// other sources answer.
#[actix_web::test]
async fn a_query_above_the_call_limit_says_what_fits_in_the_vendors_terms() {
    let r = start_with(3).await;
    // Kolkata days over a week: one `1m` range a day.
    let v = crate::common::usage_json(
        &r.base,
        &r.token,
        "start=2026-10-20&end=2026-10-27&tz=Asia/Kolkata&bucket=day&source=openai,anthropic,do-prod",
    )
    .await;
    let entry = |name: &str| {
        v["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["source"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(entry("do-prod")["status"], "ok");
    for (name, words) in [
        ("openai", "OpenAI usage requests"),
        ("anthropic", "Anthropic usage report requests"),
    ] {
        let e = entry(name);
        assert_eq!(e["status"], "error", "{e}");
        assert_eq!(e["error"]["type"], "urn:usage-gateway:problem:source_limit");
        let detail = e["error"]["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!("{name}: this query needs")),
            "{detail}"
        );
        assert!(
            detail.contains(words) && detail.contains("1440 `1m` buckets"),
            "{detail}"
        );
        assert!(
            !detail.contains("agent"),
            "no agent × window advice: {detail}"
        );
    }
}
