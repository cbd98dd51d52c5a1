//! Kibana placed in time from consumption snapshots (issue 22): the simulated Kibana's clock
//! moves hour by hour over five days while the syncer polls it (with a restart half-way); the
//! gateway then places each day's usage where the rounds happened, for both spaces (which
//! share an agent id), and everything recorded adds up to Kibana's lifetime totals. On SQLite
//! and PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, TimeZone, Utc};
use serde_json::Value;
use usage_core::{Counters, PointFilter, Window};
use usage_gateway::auth::mint_dev_token;
use usage_gateway::config::Config;
use usage_gateway::demo::{DEMO_CONFIG, demo_values};
use usage_gateway::registry::build_providers;
use usage_gateway::state::AppState;
use usage_gateway::sync;
use usage_sim::{DataSpec, TruthFilter};
use usage_store::testing::{Engine, Fresh};

use crate::common::on_both_engines;

const SECRET: &str = "snapshot-secret-0123456789abcdef0123456789";

/// The simulated data ends here.
fn data_end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 27, 6, 0, 0).unwrap()
}

/// The conversation of the default space whose rounds fall on the most UTC days of the five
/// from its first one: its agent, id, and those five days.
fn longest_conversation(data: &usage_sim::KibanaData) -> (String, String, Window) {
    let mut best: Option<(usize, String, String, Window)> = None;
    for a in data.agents("default") {
        for c in data.conversations("default", &a.id) {
            let d0 = c.created_at.duration_trunc(TimeDelta::days(1)).unwrap();
            let days = Window::new(d0, d0 + TimeDelta::days(5));
            if days.end > data_end() {
                continue;
            }
            let on: std::collections::BTreeSet<i64> = c
                .rounds
                .iter()
                .map(|r| (r.at - d0).num_days())
                .filter(|d| *d < 5)
                .collect();
            if best.as_ref().is_none_or(|b| on.len() > b.0) {
                best = Some((on.len(), a.id.clone(), c.id.clone(), days));
            }
        }
    }
    let (n, agent, conversation, days) = best.unwrap();
    assert!(n >= 5, "the data has a conversation on {n} days at most");
    (agent, conversation, days)
}

/// The Kibana sources of the demo configuration and their spaces.
const SPACES: [(&str, &str); 2] = [
    ("kibana-default", "default"),
    ("kibana-marketing", "marketing"),
];

fn config(values: &BTreeMap<String, String>) -> Config {
    let text = DEMO_CONFIG.replace(
        "sync_interval = \"1m\"",
        "sync_interval = \"1m\"\nsync = false",
    );
    Config::parse(&text, &|k| values.get(k).cloned()).unwrap()
}

/// A gateway over the store at `fresh` (a new one is a restart: new providers, new caches).
async fn gateway(values: &BTreeMap<String, String>) -> AppState {
    let config = config(values);
    let providers = build_providers(&config).unwrap();
    let mut state = AppState::new(config, providers).unwrap();
    state.open_store().await.unwrap();
    state
}

/// Polls both Kibana sources of `state` at each hour from `from` (inclusive) to `to`
/// (inclusive), with the simulated Kibana's clock at that hour.
async fn poll_hourly(
    state: &AppState,
    sims: &usage_sim::Simulators,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) {
    let handle = state.store.clone().unwrap();
    let mut t = from;
    while t <= to {
        sims.kibana.set_clock(Some(t));
        for (name, _) in SPACES {
            let source = state.sources[name].clone();
            let polled = sync::snapshot_pass(
                &handle,
                &source,
                Duration::from_secs(90 * 86_400),
                Duration::from_secs(600),
                t,
            )
            .await
            .unwrap();
            assert!(polled.is_some(), "{name} has snapshots");
        }
        t += TimeDelta::hours(1);
    }
}

async fn get(base: &str, token: &str, query: &str) -> Value {
    crate::common::usage_json(base, token, query).await
}

fn counters(row: &Value) -> Counters {
    crate::common::counters_of(row)
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

async fn conversations_are_placed_where_their_rounds_happened(engine: Engine) {
    let Some(fresh) = Fresh::new(engine).await else {
        return;
    };
    let sims = crate::common::sims_without_do_limit(&DataSpec::small(data_end())).await;
    let values = demo_values(
        &sims,
        "127.0.0.1:0".parse().unwrap(),
        SECRET,
        &fresh.location,
    );
    let token = mint_dev_token(&config(&values).auth, "demo", Utc::now().timestamp()).unwrap();
    let (agent, conversation, days) = longest_conversation(&sims.data.kibana);
    let half = days.start + TimeDelta::days(2) + TimeDelta::hours(7);

    // The first half, then a restart (new providers and caches over the same store), then
    // the second half.
    let first = gateway(&values).await;
    poll_hourly(&first, &sims, days.start - TimeDelta::hours(1), half).await;
    drop(first);
    let state = gateway(&values).await;
    poll_hourly(&state, &sims, half + TimeDelta::hours(1), days.end).await;
    let store = state.store.clone().unwrap().get().unwrap().clone();
    let bound = usage_gateway::server::bind(state).unwrap();
    let base = format!("http://{}", bound.addr);
    actix_web::rt::spawn(bound.run());

    let q = format!(
        "start={}&end={}&bucket=day&group_by=source&source=kibana-default,kibana-marketing",
        ts(days.start),
        ts(days.end)
    );
    let v = get(&base, &token, &q).await;
    assert_eq!(v["complete"], true, "{:#}", v["sources"]);
    for entry in v["sources"].as_array().unwrap() {
        assert_eq!(entry["attribution"], "snapshot", "{entry:#}");
        assert_eq!(entry["attribution_resolution_seconds"], 3600, "{entry:#}");
        assert_eq!(entry["upstream_requests"], 0, "{entry:#}");
    }
    let data = &sims.data.kibana;
    let mut some_usage = false;
    for (name, space) in SPACES {
        for d in 0..5 {
            let day = Window::new(
                days.start + TimeDelta::days(d),
                days.start + TimeDelta::days(d + 1),
            );
            let truth = data.truth_rounds(space, &TruthFilter::default(), day);
            let got = v["rows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["source"] == name && r["bucket_start"] == ts(day.start).as_str())
                .map(counters)
                .unwrap_or_default();
            assert_eq!(got, truth, "{name}, day {}", ts(day.start));
            some_usage |= !truth.is_zero();
        }
        // Everything recorded adds up to Kibana's lifetime totals at the last poll.
        let all = Window::new(data_end() - TimeDelta::days(400), data_end());
        let mut recorded = Counters::default();
        for p in store
            .placed(name, all, &PointFilter::default())
            .await
            .unwrap()
        {
            recorded.add(&p.counters);
        }
        assert_eq!(
            recorded,
            data.truth_as_of(space, &TruthFilter::default(), all, days.end),
            "{name}"
        );
    }
    assert!(some_usage, "the polled days hold Kibana usage");

    // The conversation of the default space with rounds on the most of these days is split
    // across them as its rounds happened.
    let spanned = data
        .conversations("default", &agent)
        .iter()
        .find(|c| c.id == conversation)
        .unwrap()
        .rounds
        .iter()
        .filter(|r| days.contains(r.at))
        .map(|r| (r.at - days.start).num_days())
        .collect::<std::collections::BTreeSet<i64>>()
        .len();
    let q = format!(
        "start={}&end={}&bucket=day&group_by=conversation&source=kibana-default&agent={agent}",
        ts(days.start),
        ts(days.end)
    );
    let v = get(&base, &token, &q).await;
    let rows: Vec<&Value> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["conversation"] == conversation.as_str())
        .collect();
    assert_eq!(rows.len(), spanned, "{rows:#?}");
    for row in rows {
        let start = DateTime::parse_from_rfc3339(row["bucket_start"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc);
        let filter = TruthFilter {
            agent: Some(agent.clone()),
            conversation: Some(conversation.clone()),
            ..TruthFilter::default()
        };
        let day = Window::new(start, start + TimeDelta::days(1));
        assert_eq!(counters(row), data.truth_rounds("default", &filter, day));
    }

    // After the last poll the simulated Kibana moves on (until some usage happened); a query
    // of that time asks Kibana (`no-cache`: the provider's scan of the last poll would
    // answer otherwise) and counts each conversation's totals less what the last poll
    // recorded.
    let mut later = days.end + TimeDelta::hours(3);
    while data
        .truth_rounds(
            "default",
            &TruthFilter::default(),
            Window::new(days.end, later),
        )
        .is_zero()
    {
        later += TimeDelta::hours(3);
        assert!(later < data_end(), "no Kibana usage after the polled days");
    }
    sims.kibana.set_clock(Some(later));
    let q = format!(
        "start={}&end={}&source=kibana-default",
        ts(days.end),
        ts(later)
    );
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/usage?{q}"))
        .bearer_auth(&token)
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let tail = Window::new(days.end, later);
    let got = v["totals"]
        .as_array()
        .unwrap()
        .first()
        .map(counters)
        .unwrap_or_default();
    assert_eq!(
        got,
        data.truth_rounds("default", &TruthFilter::default(), tail),
        "{v:#}"
    );
    assert!(
        v["sources"][0]["upstream_requests"].as_u64().unwrap() > 0,
        "{v:#}"
    );

    // A poll that sees the long conversation with smaller totals (a reset) is reported in the
    // notes of answers over that time; what was recorded stays.
    let before = store
        .placed(
            "kibana-default",
            Window::new(days.start, days.end),
            &PointFilter::default(),
        )
        .await
        .unwrap();
    let reset_at = later + TimeDelta::seconds(1);
    let mut reset = store
        .last_totals("kibana-default", &[(agent.clone(), conversation.clone())])
        .await
        .unwrap()
        .remove(0);
    reset.counters.input /= 2;
    let outcome = store
        .record_poll("kibana-default", reset_at, later, &[reset])
        .await
        .unwrap();
    assert_eq!(outcome.shrunk.len(), 1, "{outcome:?}");
    let q = format!(
        "start={}&end={}&source=kibana-default",
        ts(days.start),
        ts(reset_at + TimeDelta::hours(1))
    );
    let v = get(&base, &token, &q).await;
    let notes = v["sources"][0]["notes"].to_string();
    assert!(notes.contains("totals shrank"), "{v:#}");
    assert!(notes.contains(&conversation), "{notes}");
    let after = store
        .placed(
            "kibana-default",
            Window::new(days.start, days.end),
            &PointFilter::default(),
        )
        .await
        .unwrap();
    assert_eq!(before, after);
    fresh.remove().await;
}

on_both_engines!(conversations_are_placed_where_their_rounds_happened);
