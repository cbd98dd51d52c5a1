//! The usage store under the gateway: a gateway answering from the store (filled by a sync
//! pass) gives the same rows and totals as a gateway answering live, for every grouping and
//! bucket, in UTC, Europe/Berlin across the end of summer time and Asia/Kolkata (whose days
//! start at :30 UTC, so their edges are fetched live), with a range starting at 13:17; and the
//! part the store covers costs no vendor call. Each test runs on SQLite and on PostgreSQL
//! (`usage_store::testing`: skipped without `USAGE_GATEWAY_TEST_DATABASE_URL`, except in CI).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use usage_core::Window;
use usage_gateway::auth::mint_dev_token;
use usage_gateway::config::Config;
use usage_gateway::demo::{DEMO_CONFIG, demo_values};
use usage_gateway::registry::build_providers;
use usage_gateway::state::AppState;
use usage_gateway::stored::StoreHandle;
use usage_gateway::sync::{self, PassEnd, PassSettings};
use usage_sim::DataSpec;
use usage_store::testing::{Engine, Fresh};

use crate::common::on_both_engines;

/// The simulated data ends here: two days after Berlin's clocks went back (2026-10-25 01:00 UTC).
fn data_end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 27, 6, 0, 0).unwrap()
}

/// The range the store holds: 2026-10-24 00:00 to 2026-10-27 00:00 UTC.
fn stored_range() -> Window {
    Window::new(
        Utc.with_ymd_and_hms(2026, 10, 24, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 10, 27, 0, 0, 0).unwrap(),
    )
}

/// Dense data over a few days, so that every hour holds usage.
fn spec() -> DataSpec {
    DataSpec {
        span: chrono::Duration::days(5),
        do_events: 3000,
        cbk_records: 3000,
        ..DataSpec::small(data_end())
    }
}

/// The demo configuration with the DigitalOcean budget raised (two gateways and a sync share
/// one simulator without its limit) and the store's own syncer off (the test syncs).
fn config(values: &BTreeMap<String, String>) -> Config {
    let text = DEMO_CONFIG
        .replace(
            "token = \"${SIM_DIGITALOCEAN_TOKEN}\"",
            "token = \"${SIM_DIGITALOCEAN_TOKEN}\"\nrate_limit_per_minute = 100000\nmax_upstream_calls = 5000",
        )
        // OpenAI's and Anthropic's lines (the same in the demo).
        .replace(
            "rate_limit_per_minute = 600\nmax_upstream_calls = 200\n",
            "rate_limit_per_minute = 100000\nmax_upstream_calls = 5000\n",
        )
        .replace("sync_interval = \"1m\"", "sync_interval = \"1m\"\nsync = false")
        // Hourly queries over three days answered live take hundreds of vendor requests: on a
        // loaded machine they may need more than the demo's 10 s.
        .replace("request_timeout = \"10s\"", "request_timeout = \"60s\"");
    Config::parse(&text, &|k| values.get(k).cloned()).unwrap()
}

struct Running {
    live: String,
    stored: String,
    token: String,
    handle: Arc<StoreHandle>,
    state_sources: Vec<Arc<usage_gateway::fetch::Source>>,
    _sims: usage_sim::Simulators,
    fresh: Fresh,
}

/// Two gateways over fresh simulators: one live, one with a fresh store of `engine` (`None`
/// when that engine is not configured here).
async fn start(engine: Engine) -> Option<Running> {
    let fresh = Fresh::new(engine).await?;
    let sims = crate::common::sims_without_do_limit(&spec()).await;
    let values = demo_values(
        &sims,
        "127.0.0.1:0".parse().unwrap(),
        "store-secret-0123456789abcdef0123456789",
        &fresh.location,
    );
    let token = mint_dev_token(&config(&values).auth, "demo", Utc::now().timestamp()).unwrap();

    let mut bases = Vec::new();
    let mut handle = None;
    let mut state_sources = Vec::new();
    for with_store in [false, true] {
        let config = config(&values);
        let providers = build_providers(&config).unwrap();
        let mut state = AppState::new(config, providers).unwrap();
        if with_store {
            state.open_store().await.unwrap();
            handle = state.store.clone();
            state_sources = state.sources.values().cloned().collect();
        } else {
            state.store_config = None;
        }
        let bound = usage_gateway::server::bind(state).unwrap();
        bases.push(format!("http://{}", bound.addr));
        actix_web::rt::spawn(bound.run());
    }
    let stored = bases.pop().unwrap();
    let live = bases.pop().unwrap();
    Some(Running {
        live,
        stored,
        token,
        handle: handle.unwrap(),
        state_sources,
        _sims: sims,
        fresh,
    })
}

on_both_engines!(
    answers_from_the_store_equal_live_answers,
    a_fully_stored_range_costs_no_vendor_call,
    closed_windows_fetched_live_are_written_back,
);

/// Fills the store with the stored range of every stored source; returns the sources synced.
async fn sync_all(r: &Running) -> Vec<String> {
    let mut synced = Vec::new();
    for source in &r.state_sources {
        if !usage_gateway::stored::is_stored(source) {
            continue;
        }
        let settings = PassSettings {
            backfill: std::time::Duration::from_secs(3 * 86_400),
            settle: std::time::Duration::from_secs(600),
            per_minute: None,
            lease_ttl: std::time::Duration::from_secs(30),
        };
        let end = sync::pass_over(&r.handle, source, stored_range(), &settings, &mut ())
            .await
            .unwrap();
        assert!(matches!(end, PassEnd::Done), "{end:?}");
        synced.push(source.info.name.clone());
    }
    synced
}

async fn get(base: &str, token: &str, query: &str) -> Value {
    crate::common::usage_json(base, token, query).await
}

fn source_entry<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == name)
        .unwrap_or_else(|| panic!("no entry for {name}: {:#}", v["sources"]))
}

async fn answers_from_the_store_equal_live_answers(engine: Engine) {
    let Some(r) = start(engine).await else {
        return;
    };
    let synced = sync_all(&r).await;
    assert_eq!(synced, ["anthropic", "chatbotkit", "do-prod", "openai"]);

    let ranges = [
        // Whole UTC days, all stored.
        ("2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z"),
        // Berlin days across the change to winter time (the 25th has 25 hours).
        ("2026-10-23T22:00:00Z", "2026-10-26T23:00:00Z"),
        // Kolkata days start at 18:30 UTC; a range starting at 13:17 and running past the
        // stored range into live-only hours.
        ("2026-10-24T13:17:00Z", "2026-10-27T05:00:00Z"),
    ];
    let zones = ["UTC", "Europe/Berlin", "Asia/Kolkata"];
    let buckets = ["hour", "day", "none"];
    let groupings = [
        "source",
        "agent",
        "usage_type",
        "user",
        "conversation",
        "provider",
        "source,agent,usage_type",
        "model",
        "source,model,usage_type",
    ];
    let mut compared = 0;
    for (start, end) in ranges {
        for tz in zones {
            for bucket in buckets {
                for group_by in groupings {
                    let q = format!(
                        "start={start}&end={end}&tz={tz}&bucket={bucket}&group_by={group_by}\
                         &source=do-prod,chatbotkit,openai,anthropic"
                    );
                    let live = get(&r.live, &r.token, &q).await;
                    let stored = get(&r.stored, &r.token, &q).await;
                    assert_eq!(live["complete"], true, "{q}: {:#}", live["sources"]);
                    assert_eq!(stored["complete"], true, "{q}: {:#}", stored["sources"]);
                    assert_eq!(live["totals"], stored["totals"], "{q}");
                    assert_eq!(live["rows"], stored["rows"], "{q}");
                    assert!(
                        live["rows"].as_array().is_some_and(|r| !r.is_empty()),
                        "{q}: no rows"
                    );
                    for name in ["do-prod", "chatbotkit", "openai", "anthropic"] {
                        let coverage = source_entry(&stored, name)["store_coverage"]
                            .as_f64()
                            .unwrap_or_else(|| panic!("{q}: {name} has no store_coverage"));
                        if tz == "Asia/Kolkata" && bucket != "none" {
                            // Kolkata hours start at :30 UTC: no stored (UTC) hour lies inside
                            // one; a Kolkata day would leave two live half hours, so it is
                            // fetched live whole.
                            assert!(coverage < 0.5, "{q}: {name} {coverage}");
                        } else {
                            assert!(coverage > 0.5, "{q}: {name} coverage {coverage}");
                        }
                        assert!(source_entry(&live, name).get("store_coverage").is_none());
                    }
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 3 * 3 * 3 * groupings.len());
    r.fresh.remove().await;
}

async fn a_fully_stored_range_costs_no_vendor_call(engine: Engine) {
    let Some(r) = start(engine).await else {
        return;
    };
    sync_all(&r).await;
    let q = "start=2026-10-24T00:00:00Z&end=2026-10-27T00:00:00Z&bucket=hour\
             &group_by=agent&source=do-prod";
    let v = get(&r.stored, &r.token, q).await;
    let entry = source_entry(&v, "do-prod");
    assert_eq!(entry["store_coverage"], 1.0, "{entry:#}");
    assert_eq!(entry["upstream_requests"], 0, "{entry:#}");
    assert!(entry["store_synced_at"].is_string(), "{entry:#}");
    // The same query live sends one request per agent and hour.
    let live = get(&r.live, &r.token, q).await;
    assert!(
        source_entry(&live, "do-prod")["upstream_requests"]
            .as_u64()
            .unwrap()
            >= 72 * 4
    );
    // A Kolkata day inside the stored range would leave its two half hours live (two requests
    // per agent): it is fetched live whole, one request per agent, as without a store.
    let kolkata = "start=2026-10-24T18:30:00Z&end=2026-10-25T18:30:00Z&tz=Asia/Kolkata\
                   &bucket=day&source=do-prod";
    let v = get(&r.stored, &r.token, kolkata).await;
    let entry = source_entry(&v, "do-prod");
    assert_eq!(entry["upstream_requests"], 4, "{entry:#}");
    assert_eq!(entry["store_coverage"], 0.0, "{entry:#}");
    // Two Kolkata days as one window keep the stored hours between the half hours.
    let two_days = "start=2026-10-24T18:30:00Z&end=2026-10-26T18:30:00Z&tz=Asia/Kolkata\
                    &source=do-prod";
    let v = get(&r.stored, &r.token, two_days).await;
    let entry = source_entry(&v, "do-prod");
    assert_eq!(entry["upstream_requests"], 2 * 4, "{entry:#}");
    let coverage = entry["store_coverage"].as_f64().unwrap();
    assert!((coverage - 47.0 / 48.0).abs() < 1e-3, "{coverage}");
    r.fresh.remove().await;
}

async fn closed_windows_fetched_live_are_written_back(engine: Engine) {
    let Some(r) = start(engine).await else {
        return;
    };
    // Nothing synced: the first answer is live, and its closed days are written back.
    let q = "start=2026-10-25T00:00:00Z&end=2026-10-26T00:00:00Z&bucket=day&source=do-prod";
    let first = get(&r.stored, &r.token, q).await;
    assert_eq!(source_entry(&first, "do-prod")["store_coverage"], 0.0);
    let store = r.handle.get().unwrap().clone();
    let day = Window::new(
        Utc.with_ymd_and_hms(2026, 10, 25, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 10, 26, 0, 0, 0).unwrap(),
    );
    let mut covered = Vec::new();
    for _ in 0..100 {
        covered = store.coverage("do-prod", day).await.unwrap();
        if !covered.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(covered.len(), 1, "{covered:?}");
    assert_eq!(covered[0].window, day);
    // A filtered query is not written back (the store holds every agent).
    let filtered = "start=2026-10-26T00:00:00Z&end=2026-10-27T00:00:00Z&bucket=day\
                    &source=do-prod&agent=nobody";
    get(&r.stored, &r.token, filtered).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let next = Window::new(day.end, day.end + chrono::Duration::days(1));
    assert!(store.coverage("do-prod", next).await.unwrap().is_empty());
    r.fresh.remove().await;
}
