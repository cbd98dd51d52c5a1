//! The usage store with several replicas and failures: the syncing replica killed mid-backfill
//! (another takes over, no gap, nothing counted twice), a vendor failing mid-backfill (the next
//! pass resumes from what is stored), the store down at start-up or going away (queries are
//! answered live with a note), and a schema this build does not know (start-up stops, naming
//! the migration). Each runs on SQLite and PostgreSQL where the engine matters.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::Value;
use usage_core::Window;
use usage_gateway::auth::mint_dev_token;
use usage_gateway::config::Config;
use usage_gateway::demo::{DEMO_CONFIG, demo_values};
use usage_gateway::registry::build_providers;
use usage_gateway::state::AppState;
use usage_gateway::sync::{self, Observer, PassSettings, SyncError};
use usage_sim::{DataSpec, TruthFilter};
use usage_store::testing::{Engine, Fresh};

use crate::common::on_both_engines;
use crate::e2e::{spawn_serve_with, until_healthy};

const SECRET: &str = "replica-store-secret-0123456789abcdef0123";

/// Simulators over 90 days up to now, DigitalOcean without its own rate limit (the gateways'
/// budgets are raised in [`config_text`]), answering each request after `latency`.
async fn sims(latency: Duration) -> usage_sim::Simulators {
    let sims = crate::common::sims_without_do_limit(&DataSpec::small(Utc::now())).await;
    sims.digitalocean
        .faults()
        .set_latency(latency, Duration::ZERO);
    sims
}

/// The demo configuration with DigitalOcean's budget raised and a short lease; OpenAI and
/// Anthropic at their default budgets (the demo's 600 a minute fills the shared store with
/// their hours as fast as DigitalOcean's, and these tests watch DigitalOcean's backfill).
fn config_text() -> String {
    DEMO_CONFIG
        .replace(
            "rate_limit_per_minute = 600\nmax_upstream_calls = 200\n",
            "",
        )
        .replace(
            "token = \"${SIM_DIGITALOCEAN_TOKEN}\"",
            "token = \"${SIM_DIGITALOCEAN_TOKEN}\"\nrate_limit_per_minute = 100000",
        )
        .replace(
            "sync_interval = \"1m\"",
            "sync_interval = \"1m\"\nlease_ttl = \"2s\"\nopen_timeout = \"2s\"",
        )
}

fn config(values: &BTreeMap<String, String>) -> Config {
    Config::parse(&config_text(), &|k| values.get(k).cloned()).unwrap()
}

async fn json(base: &str, token: &str, path: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

/// The `store.sync` progress of `source` as `base` shows it.
async fn progress(base: &str, token: &str, source: &str) -> Option<Value> {
    let v = json(base, token, "/v1/sources").await;
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == source)
        .and_then(|s| s["store"]["sync"].as_object().cloned())
        .map(Value::Object)
}

/// The pid in a lease holder's name (`host:pid:suffix`).
fn holder_pid(progress: &Value) -> u32 {
    progress["holder"]
        .as_str()
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// Kills the replica syncing DigitalOcean in the middle of its backfill: the other replica
/// takes the lease over and finishes, the stored hours have no gap, and their sum equals the
/// simulator's ground truth (nothing counted twice).
async fn a_killed_syncer_is_replaced_without_gaps_or_double_counts(engine: Engine) {
    let Some(fresh) = Fresh::new(engine).await else {
        return;
    };
    // 7 days × 24 hours × 4 agents = 672 requests, at 100 ms each and 8 at once: about ten
    // seconds of backfill to catch in the middle (at 40 ms, a loaded CI machine once saw none
    // of the three seconds it took).
    let sims = sims(Duration::from_millis(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(config_text().as_bytes())
        .unwrap();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let (child, base) = spawn_serve_with(&path, &sims, SECRET, &fresh.location, &[]);
        replicas.push((child, base));
    }
    for (_, base) in &replicas {
        until_healthy(base).await;
    }
    let values = demo_values(
        &sims,
        "127.0.0.1:0".parse().unwrap(),
        SECRET,
        &fresh.location,
    );
    let token = mint_dev_token(&config(&values).auth, "demo", Utc::now().timestamp()).unwrap();

    // Wait until one replica has stored some hours but not all, then kill it.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (victim, first) = loop {
        assert!(Instant::now() < deadline, "no replica started syncing");
        if let Some(p) = progress(&replicas[0].1, &token, "do-prod").await
            && p["state"] == "syncing"
            && p["vendor_requests"].as_u64().unwrap_or(0) > 0
            && p["backlog_windows"].as_u64().unwrap_or(0) > 24
        {
            let pid = holder_pid(&p);
            let victim = replicas
                .iter()
                .position(|(c, _)| c.0.id() == pid)
                .expect("the holder is one of the replicas");
            break (victim, p);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let survivor = 1 - victim;
    replicas[victim].0.0.kill().unwrap();
    replicas[victim].0.0.wait().unwrap();
    let killed_at = Instant::now();

    // The survivor takes over within the lease time and finishes the backfill.
    let survivor_pid = replicas[survivor].0.0.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        assert!(Instant::now() < deadline, "the survivor did not finish");
        if let Some(p) = progress(&replicas[survivor].1, &token, "do-prod").await
            && holder_pid(&p) == survivor_pid
            && p["state"] == "idle"
            && p["backlog_windows"] == 0
        {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        killed_at.elapsed() < Duration::from_secs(100),
        "took over in {:?}",
        killed_at.elapsed()
    );
    assert_eq!(first["backfill_from"], done["backfill_from"]);

    // No gap: the range is one covered interval; nothing twice: the stored hours add up to the
    // simulator's truth, and a query of the range costs no vendor call.
    let from = DateTime::parse_from_rfc3339(done["backfill_from"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    let range = Window::new(from, from + TimeDelta::days(7));
    let store = fresh.open().await.unwrap();
    let merged =
        usage_core::store::merge_coverage(&store.coverage("do-prod", range).await.unwrap());
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert_eq!(merged[0].window, range);
    let q = format!(
        "/v1/usage?start={}&end={}&source=do-prod",
        range.start.to_rfc3339().replace('+', "%2B"),
        range.end.to_rfc3339().replace('+', "%2B")
    );
    let v = json(&replicas[survivor].1, &token, &q).await;
    let entry = &v["sources"][0];
    assert_eq!(entry["store_coverage"], 1.0, "{entry:#}");
    assert_eq!(entry["upstream_requests"], 0, "{entry:#}");
    let truth = sims.data.digitalocean.truth(&TruthFilter::default(), range);
    let totals = &v["totals"][0];
    assert_eq!(totals["input_tokens"], truth.input, "{v:#}");
    assert_eq!(totals["output_tokens"], truth.output, "{v:#}");
    assert_eq!(totals["other_tokens"], truth.other, "{v:#}");
    drop(replicas);
    fresh.remove().await;
}

/// Counts what a pass stored and the vendor requests it took.
#[derive(Default)]
struct Count {
    windows: u64,
    requests: u64,
}

impl Observer for Count {
    fn started(&mut self, _: u64) {}
    fn stored(&mut self, windows: u64, requests: u64) {
        self.windows += windows;
        self.requests += requests;
    }
}

/// Stores the hours it is told of, and on the first makes the vendor fail from then on.
struct FailAfterFirst<'a> {
    sims: &'a usage_sim::Simulators,
    tripped: AtomicBool,
    stored: u64,
}

impl Observer for FailAfterFirst<'_> {
    fn started(&mut self, _: u64) {}
    fn stored(&mut self, windows: u64, _: u64) {
        self.stored += windows;
        if !self.tripped.swap(true, Ordering::Relaxed) {
            self.sims.digitalocean.faults().force_next(1_000_000, 503);
        }
    }
}

/// A vendor failing mid-backfill: the pass stops with the vendor's error, what it stored stays,
/// and the next pass fetches only the rest (no hour twice), ending at the simulator's truth.
async fn a_vendor_failing_mid_backfill_resumes_from_what_is_stored(engine: Engine) {
    let Some(fresh) = Fresh::new(engine).await else {
        return;
    };
    let sims = sims(Duration::ZERO).await;
    let values = demo_values(
        &sims,
        "127.0.0.1:0".parse().unwrap(),
        SECRET,
        &fresh.location,
    );
    let mut config = config(&values);
    config.store.as_mut().unwrap().sync = false;
    let providers = build_providers(&config).unwrap();
    let mut state = AppState::new(config, providers).unwrap();
    state.open_store().await.unwrap();
    let handle = state.store.clone().unwrap();
    let source = state.sources["do-prod"].clone();
    let now = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap();
    let range = Window::new(now - TimeDelta::days(3), now - TimeDelta::days(1));
    let settings = PassSettings {
        backfill: Duration::from_secs(2 * 86_400),
        settle: Duration::from_secs(600),
        per_minute: None,
        lease_ttl: Duration::from_secs(30),
    };
    let mut observer = FailAfterFirst {
        sims: &sims,
        tripped: AtomicBool::new(false),
        stored: 0,
    };
    let failed = sync::pass_over(&handle, &source, range, &settings, &mut observer).await;
    assert!(matches!(failed, Err(SyncError::Vendor(_))), "{failed:?}");
    // The newest day went in one call before the vendor failed.
    assert_eq!(observer.stored, 24);
    let store = handle.get().unwrap().clone();
    let covered =
        usage_core::store::merge_coverage(&store.coverage("do-prod", range).await.unwrap());
    assert_eq!(
        covered.iter().map(|c| c.window).collect::<Vec<_>>(),
        [Window::new(range.end - TimeDelta::days(1), range.end)]
    );

    sims.digitalocean.faults().clear();
    let mut resumed = Count::default();
    let end = sync::pass_over(&handle, &source, range, &settings, &mut resumed)
        .await
        .unwrap();
    assert!(matches!(end, sync::PassEnd::Done));
    // Only the missing day was fetched: 24 hours, one request per agent and hour (the agent
    // list is cached).
    assert_eq!((resumed.windows, resumed.requests), (24, 24 * 4));
    let points = store
        .points("do-prod", range, &usage_core::PointFilter::default())
        .await
        .unwrap();
    let mut sum = usage_core::Counters::default();
    for p in &points {
        sum.add(&p.counters);
    }
    assert_eq!(
        sum,
        sims.data.digitalocean.truth(&TruthFilter::default(), range)
    );
    fresh.remove().await;
}

/// A store that cannot be reached at start-up: the gateway starts, answers live with a note
/// (never showing the URL's password), and says so in `/v1/sources`.
#[actix_web::test]
async fn an_unreachable_store_at_start_up_answers_live_with_a_note() {
    let sims = sims(Duration::ZERO).await;
    // Nothing listens on port 9 of this host.
    let url = "postgres://gateway:hunter2-secret@127.0.0.1:9/usage";
    let values = demo_values(&sims, "127.0.0.1:0".parse().unwrap(), SECRET, url);
    let config = config(&values);
    let token = mint_dev_token(&config.auth, "demo", Utc::now().timestamp()).unwrap();
    let providers = build_providers(&config).unwrap();
    let mut state = AppState::new(config, providers).unwrap();
    state.open_store().await.unwrap();
    assert!(state.store.as_ref().unwrap().get().is_none());
    let bound = usage_gateway::server::bind(state).unwrap();
    let base = format!("http://{}", bound.addr);
    actix_web::rt::spawn(bound.run());
    let v = json(&base, &token, "/v1/usage?source=do-prod").await;
    assert_eq!(v["complete"], true, "{v:#}");
    let notes = v["sources"][0]["notes"].to_string();
    assert!(
        notes.contains("usage store (postgres) not connected"),
        "{notes}"
    );
    let sources = json(&base, &token, "/v1/sources").await.to_string();
    assert!(sources.contains("\"connected\":false"), "{sources}");
    assert!(!sources.contains("hunter2"), "{sources}");
    assert!(!v.to_string().contains("hunter2"));
}

/// A TCP relay to PostgreSQL that can be cut, standing in for a database going away.
struct Relay {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, task }
    }

    /// Cuts every connection and stops accepting.
    fn cut(&self) {
        self.task.abort();
    }
}

/// PostgreSQL going away while the gateway runs: queries keep answering, live, with a note.
#[actix_web::test]
async fn a_store_going_away_answers_live_with_a_note() {
    let Some(fresh) = Fresh::new(Engine::Postgres).await else {
        return;
    };
    let mut url = url::Url::parse(&fresh.location).unwrap();
    let target: std::net::SocketAddr =
        format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
            .parse()
            .unwrap();
    let relay = Relay::start(target).await;
    url.set_port(Some(relay.addr.port())).unwrap();
    let sims = sims(Duration::ZERO).await;
    let values = demo_values(&sims, "127.0.0.1:0".parse().unwrap(), SECRET, url.as_str());
    let mut config = config(&values);
    config.store.as_mut().unwrap().sync = false;
    let token = mint_dev_token(&config.auth, "demo", Utc::now().timestamp()).unwrap();
    let providers = build_providers(&config).unwrap();
    let mut state = AppState::new(config, providers).unwrap();
    state.open_store().await.unwrap();
    assert!(state.store.as_ref().unwrap().get().is_some());
    let bound = usage_gateway::server::bind(state).unwrap();
    let base = format!("http://{}", bound.addr);
    actix_web::rt::spawn(bound.run());
    let day = Utc::now().duration_trunc(TimeDelta::days(1)).unwrap();
    let range = format!(
        "start={}&end={}",
        (day - TimeDelta::days(3)).format("%Y-%m-%dT%H:%M:%SZ"),
        (day - TimeDelta::days(1)).format("%Y-%m-%dT%H:%M:%SZ")
    );
    let before = json(
        &base,
        &token,
        &format!("/v1/usage?source=do-prod&bucket=day&{range}"),
    )
    .await;
    assert!(
        before["sources"][0]["store_coverage"].is_number(),
        "{before:#}"
    );

    relay.cut();
    let started = Instant::now();
    let after = json(
        &base,
        &token,
        &format!("/v1/usage?source=do-prod&bucket=day&group_by=agent&{range}"),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(after["complete"], true, "{after:#}");
    let notes = after["sources"][0]["notes"].to_string();
    assert!(
        notes.contains("usage store (postgres) unavailable; answered live"),
        "{notes}"
    );
    assert!(
        after["sources"][0].get("store_coverage").is_none(),
        "{after:#}"
    );
    assert_eq!(before["totals"], after["totals"]);
    fresh.remove().await;
}

/// A store whose schema has a migration this build does not know stops `serve` (exit 2) with
/// an error naming the migration.
#[actix_web::test]
async fn a_foreign_schema_stops_start_up_naming_the_migration() {
    let fresh = Fresh::new(Engine::Sqlite).await.unwrap();
    drop(fresh.open().await.unwrap());
    fresh
        .exec(
            "INSERT INTO _usage_store_migrations (version, description, success, checksum, \
             execution_time) VALUES (9999, 'from_a_newer_build', 1, x'00', 0)",
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let text = format!(
        "[auth]\nalgorithms = [\"HS256\"]\nhs256_secret = \"{SECRET}\"\n[store]\nurl = \"{}\"\n",
        fresh.location
    );
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_usage-gateway"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("migration 9999_from_a_newer_build"),
        "{stderr}"
    );
    fresh.remove().await;
}

on_both_engines!(
    a_killed_syncer_is_replaced_without_gaps_or_double_counts,
    a_vendor_failing_mid_backfill_resumes_from_what_is_stored,
);
