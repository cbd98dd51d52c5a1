//! End to end: the demo configuration against the three simulators, compared with the
//! simulators' ground truth; and the real `usage-gateway demo` binary (README's first command).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as CDuration, DurationRound, Utc};
use serde_json::Value;
use usage_core::{Counters, Window};
use usage_gateway::auth::mint_dev_token;
use usage_gateway::demo::{demo_config, demo_values};
use usage_gateway::registry::build_providers;
use usage_gateway::state::AppState;
use usage_sim::{DataSpec, TruthFilter};

struct Running {
    base: String,
    token: String,
    sims: usage_sim::Simulators,
}

async fn start(now: DateTime<Utc>) -> Running {
    let sims = usage_sim::start_all(&DataSpec::small(now)).await.unwrap();
    let values = demo_values(
        &sims,
        "127.0.0.1:0".parse().unwrap(),
        "e2e-secret-0123456789abcdef0123456789",
        // Not opened: this gateway answers live.
        "unused.sqlite",
    );
    let config = demo_config(&values).unwrap();
    let token = mint_dev_token(&config.auth, "demo", Utc::now().timestamp()).unwrap();
    let providers = build_providers(&config).unwrap();
    let state = AppState::new(config, providers).unwrap();
    let bound = usage_gateway::server::bind(state).unwrap();
    let base = format!("http://{}", bound.addr);
    actix_web::rt::spawn(bound.run());
    Running { base, token, sims }
}

async fn usage(r: &Running, query: &str) -> Value {
    crate::common::usage_json(&r.base, &r.token, query).await
}

fn counters(row: &Value) -> Counters {
    crate::common::counters_of(row)
}

fn agent_filter(agent: &str) -> TruthFilter {
    TruthFilter {
        agent: Some(agent.to_owned()),
        ..TruthFilter::default()
    }
}

/// Sums rows per (source, agent) for one unit.
fn by_agent(v: &Value, unit: &str) -> BTreeMap<(String, String), Counters> {
    let mut out: BTreeMap<(String, String), Counters> = BTreeMap::new();
    for row in v["rows"].as_array().unwrap() {
        if row["unit"] != unit {
            continue;
        }
        let key = (
            row["source"].as_str().unwrap().to_owned(),
            row["agent"].as_str().unwrap_or("").to_owned(),
        );
        out.entry(key).or_default().add(&counters(row));
    }
    out
}

/// `model`: DigitalOcean usage carries its agent's model, the sources without models give
/// `null`, totals are the same under every grouping, and a model filter applies where a source
/// has models and skips the others.
#[actix_web::test]
async fn the_model_dimension_keeps_totals_and_filters() {
    let now = Utc::now();
    let r = start(now).await;
    let data = r.sims.data.clone();
    let today = now.duration_trunc(CDuration::days(1)).unwrap();
    let range = Window::new(today - CDuration::days(10), today);
    let span = format!(
        "start={}&end={}",
        range.start.format("%Y-%m-%d"),
        range.end.format("%Y-%m-%d")
    );
    let plain = usage(&r, &format!("{span}&group_by=")).await;
    for group_by in [
        "model",
        "source,model",
        "model,usage_type",
        "agent,model,user",
    ] {
        let v = usage(&r, &format!("{span}&bucket=day&group_by={group_by}")).await;
        assert_eq!(v["complete"], true, "{group_by}: {:#}", v["sources"]);
        assert_eq!(v["totals"], plain["totals"], "{group_by}");
    }
    let v = usage(&r, &format!("{span}&group_by=source,agent,model")).await;
    let model_of: BTreeMap<&str, &str> = data
        .digitalocean
        .agents()
        .iter()
        .map(|a| (a.uuid.as_str(), a.model.as_str()))
        .collect();
    for row in v["rows"].as_array().unwrap() {
        match row["source"].as_str().unwrap() {
            "do-prod" => assert_eq!(
                row["model"],
                Value::from(model_of[row["agent"].as_str().unwrap()]),
                "{row}"
            ),
            // The vendors that name models per request (tests/gateway/vendors.rs).
            "openai" | "anthropic" => {}
            _ => assert_eq!(row["model"], Value::Null, "{row}"),
        }
    }

    let model = data.digitalocean.agents()[0].model.clone();
    let v = usage(
        &r,
        &format!(
            "{span}&group_by=source,model&model={}",
            model.replace(' ', "%20")
        ),
    )
    .await;
    assert_eq!(v["query"]["filters"]["model"], serde_json::json!([model]));
    for s in v["sources"].as_array().unwrap() {
        if ["do-prod", "openai", "anthropic"].contains(&s["source"].as_str().unwrap()) {
            assert_eq!(s["status"], "ok", "{s}");
        } else {
            assert_eq!(s["status"], "skipped", "{s}");
            let detail = s["error"]["detail"].as_str().unwrap();
            assert!(detail.contains("has no models"), "{detail}");
        }
    }
    let truth = data.digitalocean.truth(
        &TruthFilter {
            model: Some(model.clone()),
            ..TruthFilter::default()
        },
        range,
    );
    let rows = v["rows"].as_array().unwrap();
    assert!(
        rows.iter().all(|row| row["model"] == model.as_str()),
        "{rows:?}"
    );
    let mut got = Counters::default();
    for row in rows {
        got.add(&counters(row));
    }
    assert_eq!(got, truth);
    assert!(truth.total() > 0);
}

#[actix_web::test]
async fn demo_sources_equal_the_simulators_ground_truth() {
    let now = Utc::now();
    let r = start(now).await;
    let data = r.sims.data.clone();
    let today = now.duration_trunc(CDuration::days(1)).unwrap();
    let range = Window::new(today - CDuration::days(30), today);
    let q = format!(
        "start={}&end={}&bucket=day&group_by=source,agent",
        range.start.to_rfc3339(),
        range.end.to_rfc3339()
    );
    let v = usage(&r, &q.replace('+', "%2B")).await;
    assert_eq!(v["complete"], true, "{:#}", v["sources"]);
    let names: Vec<&str> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "anthropic",
            "chatbotkit",
            "do-prod",
            "kibana-default",
            "kibana-marketing",
            "openai"
        ]
    );
    let tokens = by_agent(&v, "tokens");
    let credits = by_agent(&v, "credits");

    for a in data.digitalocean.agents() {
        let truth = data.digitalocean.truth(&agent_filter(&a.uuid), range);
        let got = tokens
            .get(&("do-prod".into(), a.uuid.clone()))
            .copied()
            .unwrap_or_default();
        assert_eq!(got, truth, "DigitalOcean agent {}", a.uuid);
    }
    for (source, space) in [
        ("kibana-default", "default"),
        ("kibana-marketing", "marketing"),
    ] {
        for a in data.kibana.agents(space) {
            let truth = data.kibana.truth(space, &agent_filter(&a.id), range);
            let got = tokens
                .get(&(source.into(), a.id.clone()))
                .copied()
                .unwrap_or_default();
            assert_eq!(got, truth, "Kibana {space} agent {}", a.id);
        }
    }
    // ChatBotKit credits: the provider counts `BASE` records (what the per-bot endpoint counts).
    let base = |agent: &str| TruthFilter {
        usage_type: Some(usage_sim::BASE_TYPE.to_owned()),
        ..agent_filter(agent)
    };
    for b in data.chatbotkit.bots() {
        let truth = data.chatbotkit.truth(&base(&b.id), range);
        let got = credits
            .get(&("chatbotkit".into(), b.id.clone()))
            .copied()
            .unwrap_or_default();
        assert_eq!(got.total(), truth, "ChatBotKit bot {}", b.id);
        assert_eq!(
            (got.input, got.output),
            (0, 0),
            "ChatBotKit has no input/output split"
        );
    }
    let unattributed = data
        .chatbotkit
        .truth(&base(usage_core::UNATTRIBUTED_AGENT), range);
    let got = credits
        .get(&("chatbotkit".into(), usage_core::UNATTRIBUTED_AGENT.into()))
        .copied()
        .unwrap_or_default();
    assert_eq!(got.total(), unattributed, "records without botId are kept");

    // OpenAI projects and Anthropic workspaces (and its default workspace), every unit: the
    // units that are not tokens (images, characters, seconds, sessions, requests) apart.
    let mut agents: Vec<(&str, String, BTreeMap<usage_core::Unit, Counters>)> = Vec::new();
    for p in data.openai.projects() {
        agents.push((
            "openai",
            p.id.clone(),
            data.openai.truth(&agent_filter(&p.id), range),
        ));
    }
    let workspaces = data.anthropic.workspaces().iter().map(|w| w.id.clone());
    for id in std::iter::once(usage_sim::ANTHROPIC_DEFAULT_WORKSPACE.to_owned()).chain(workspaces) {
        let truth = data.anthropic.truth(&agent_filter(&id), range);
        agents.push(("anthropic", id, truth));
    }
    let mut units = std::collections::BTreeSet::new();
    for (source, id, truth) in agents {
        for unit in usage_core::Unit::ALL {
            let got = by_agent(&v, unit.as_str())
                .get(&(source.to_owned(), id.clone()))
                .copied()
                .unwrap_or_default();
            let want = truth.get(&unit).copied().unwrap_or_default();
            assert_eq!(got, want, "{source} agent {id} in {}", unit.as_str());
            if want.total() > 0 {
                units.insert(unit);
            }
        }
    }
    assert!(units.len() >= 6, "tokens and five other units: {units:?}");

    // Per-user and per-conversation on request, in another zone with weekly buckets.
    let q2 = format!(
        "start={}&end={}&bucket=week&tz=America/New_York&group_by=source,user&source=kibana-default,chatbotkit",
        range.start.format("%Y-%m-%d"),
        range.end.format("%Y-%m-%d")
    );
    let v2 = usage(&r, &q2).await;
    assert_eq!(v2["complete"], true, "{:#}", v2["sources"]);
    let rows = v2["rows"].as_array().unwrap();
    let parse = |k: &str| {
        DateTime::parse_from_rfc3339(v2["query"][k].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    let range2 = Window::new(parse("start"), parse("end"));
    let mut per_user: BTreeMap<(String, String), u64> = BTreeMap::new();
    for row in rows {
        if let Some(user) = row["user"].as_str() {
            *per_user
                .entry((row["source"].as_str().unwrap().to_owned(), user.to_owned()))
                .or_default() += row["total_tokens"].as_u64().unwrap();
        }
    }
    assert!(per_user.keys().any(|(s, _)| s == "kibana-default"));
    assert!(per_user.keys().any(|(s, _)| s == "chatbotkit"));
    for ((source, user), total) in &per_user {
        let f = TruthFilter {
            user: Some(user.clone()),
            ..TruthFilter::default()
        };
        let truth = if source == "chatbotkit" {
            data.chatbotkit.truth(
                &TruthFilter {
                    usage_type: Some(usage_sim::BASE_TYPE.to_owned()),
                    ..f
                },
                range2,
            )
        } else {
            data.kibana.truth("default", &f, range2).total()
        };
        assert_eq!(*total, truth, "{source} user {user}");
    }

    // Kibana's high_input_tokens warnings are counted per source.
    for (source, space) in [
        ("kibana-default", "default"),
        ("kibana-marketing", "marketing"),
    ] {
        let entry = v["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["source"] == source)
            .unwrap();
        assert_eq!(
            entry["warnings"],
            data.kibana.warnings(space, &TruthFilter::default(), range),
            "{source}"
        );
    }

    // A second identical query is served from the cache: no vendor call.
    let before = r.sims.digitalocean.total_calls();
    let again = usage(&r, &q.replace('+', "%2B")).await;
    assert_eq!(again["totals"], v["totals"]);
    assert_eq!(r.sims.digitalocean.total_calls(), before);
}

/// Runs the real binary like the README's first command (on a free port).
fn spawn_demo(extra: &[&str]) -> (Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_usage-gateway"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut base, mut token) = (None, None);
    while base.is_none() || token.is_none() {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("demo prints its banner");
        if let Some(rest) = line.strip_prefix("usage-gateway demo is running at ") {
            base = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("export TOKEN='") {
            token = Some(rest.trim_end_matches('\'').to_owned());
        }
    }
    (child, base.unwrap(), token.unwrap())
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn demo_binary_answers_401_then_200() {
    let (mut child, base, token) = spawn_demo(&[]);
    // Every line of the banner's `curl` examples works as printed (the token from `export`).
    let examples = usage_gateway::demo::EXAMPLES;
    assert!(
        examples.iter().any(|(path, _)| path.contains("end=now")),
        "one query includes today"
    );
    for &(path, authorized) in examples {
        let url = format!("{base}{path}");
        let mut r = reqwest::Client::new().get(&url);
        if authorized {
            r = r.bearer_auth(&token);
        }
        let status = r.send().await.unwrap().status();
        assert_eq!(status, if authorized { 200 } else { 401 }, "{url}");
    }
    let client = reqwest::Client::new();
    let r = client.get(format!("{base}/v1/usage")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!("{base}/v1/usage"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["complete"], true);
    assert_eq!(v["sources"].as_array().unwrap().len(), 6);
    let r = client.get(format!("{base}/docs/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The banner's usage page link: the page loads without a token.
    let r = client.get(format!("{base}/ui")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    terminate(&child);
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let (mut child, base, token) = spawn_demo(&["--sim-latency", "1500ms"]);
    let health = format!("{base}/healthz");
    let client = reqwest::Client::new();
    let inflight = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .get(format!("{base}/v1/usage?group_by=source"))
                .bearer_auth(&token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    terminate(&child);
    // While the in-flight request drains, a new connection is not served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_millis(700))
        .build()
        .unwrap();
    let late = fresh.get(&health).send().await;
    assert!(
        late.is_err(),
        "a new connection after SIGTERM was served: {late:?}"
    );
    let status = inflight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(status, 200);
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

/// `usage-gateway healthcheck` (the container's `HEALTHCHECK`) passes against a running gateway,
/// also when given the container's `0.0.0.0` listen address, and fails once nothing answers.
#[tokio::test]
async fn the_healthcheck_command_follows_the_gateway() {
    let (mut child, base, _token) = spawn_demo(&[]);
    let addr = base.trim_start_matches("http://").to_owned();
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let check = |listen: String| {
        Command::new(env!("CARGO_BIN_EXE_usage-gateway"))
            .args(["healthcheck", "--listen", &listen, "--timeout", "2s"])
            .env_remove("USAGE_GATEWAY_LISTEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    assert!(check(addr.clone()).success(), "healthy at {addr}");
    assert!(
        check(format!("0.0.0.0:{port}")).success(),
        "0.0.0.0 means this host"
    );
    terminate(&child);
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success());
    assert!(
        !check(addr.clone()).success(),
        "nothing answers at {addr} any more"
    );
}

/// A child process that is killed when dropped, so that a failing assertion leaves no gateway
/// running; its temporary directory (its store) is removed after it.
pub(crate) struct Reaped(pub(crate) Child, pub(crate) Option<tempfile::TempDir>);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Some(dir) = self.1.take() {
            let _ = dir.close();
        }
    }
}

/// Runs `usage-gateway serve` on the demo configuration against already running simulators, on
/// a free port; returns the process and its base URL ([`until_healthy`] waits for it).
fn spawn_serve(sims: &usage_sim::Simulators, secret: &str) -> (Reaped, String) {
    // Each process has its own store, with nothing to backfill: the replicas under test answer
    // what the vendors say now.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("usage.sqlite").display().to_string();
    let config = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/demo.toml"
    ));
    let (mut child, base) =
        spawn_serve_with(config, sims, secret, &store, &[("DEMO_BACKFILL", "0s")]);
    child.1 = Some(dir);
    (child, base)
}

/// Runs `usage-gateway serve --config <config>` with the demo values (simulators, `secret`,
/// `store`) and `env` in its environment, on a free port; returns the process and its base URL.
pub(crate) fn spawn_serve_with(
    config: &std::path::Path,
    sims: &usage_sim::Simulators,
    secret: &str,
    store: &str,
    env: &[(&str, &str)],
) -> (Reaped, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let values = demo_values(sims, listen.parse().unwrap(), secret, store);
    let child = Command::new(env!("CARGO_BIN_EXE_usage-gateway"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .envs(values)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Reaped(child, None), format!("http://{listen}"))
}

/// Waits until a gateway answers `/healthz` (at most a minute).
pub(crate) async fn until_healthy(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`serve` at {base} did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two gateway processes over the same vendors answer the same data with the same ETag,
/// although their bodies differ in fetch metadata (`fetched_at`, `duration_ms`), so that
/// `If-None-Match` gives 304 behind a load balancer.
#[actix_web::test]
async fn replicas_give_the_same_etag_for_the_same_data() {
    let now = Utc::now();
    let sims = usage_sim::start_all(&DataSpec::small(now)).await.unwrap();
    let secret = "replica-secret-0123456789abcdef0123456789";
    let (mut a, base_a) = spawn_serve(&sims, secret);
    let (mut b, base_b) = spawn_serve(&sims, secret);
    until_healthy(&base_a).await;
    until_healthy(&base_b).await;
    let unused = "unused.sqlite";
    let config = demo_config(&demo_values(
        &sims,
        "127.0.0.1:0".parse().unwrap(),
        secret,
        unused,
    ))
    .unwrap();
    let token = mint_dev_token(&config.auth, "demo", Utc::now().timestamp()).unwrap();
    let today = now.duration_trunc(CDuration::days(1)).unwrap();
    let client = reqwest::Client::new();
    let get = |base: &str, query: &str, etag: Option<&str>| {
        let mut r = client
            .get(format!("{base}/v1/usage?{query}"))
            .bearer_auth(&token);
        if let Some(etag) = etag {
            r = r.header("if-none-match", etag);
        }
        r.send()
    };
    let range = format!(
        "start={}&end={}",
        (today - CDuration::days(7)).format("%Y-%m-%d"),
        today.format("%Y-%m-%d")
    );
    for extra in [
        "bucket=day",
        "bucket=day&format=csv",
        "group_by=user,usage_type",
    ] {
        let query = format!("{range}&{extra}");
        let ra = get(&base_a, &query, None).await.unwrap();
        let rb = get(&base_b, &query, None).await.unwrap();
        assert_eq!(
            (ra.status().as_u16(), rb.status().as_u16()),
            (200, 200),
            "{query}"
        );
        let tag = |r: &reqwest::Response| r.headers()["etag"].to_str().unwrap().to_owned();
        let (tag_a, tag_b) = (tag(&ra), tag(&rb));
        assert_eq!(tag_a, tag_b, "{query}");
        if !extra.contains("csv") {
            let (va, vb): (Value, Value) = (ra.json().await.unwrap(), rb.json().await.unwrap());
            assert_eq!(va["rows"], vb["rows"]);
            assert_eq!(va["complete"], true);
        }
        // A tag from one replica revalidates at the other.
        let r = get(&base_b, &query, Some(&tag_a)).await.unwrap();
        assert_eq!(r.status(), 304, "{query}");
        // Other data, other tag.
        let other = get(&base_b, &format!("{query}&source=do-prod"), None)
            .await
            .unwrap();
        assert_ne!(tag(&other), tag_a, "{query}");
    }
    for child in [&a, &b] {
        terminate(&child.0);
    }
    assert!(a.0.wait().unwrap().success());
    assert!(b.0.wait().unwrap().success());
}

/// CSV answers are attachments named after the range, and text cells from vendors that a
/// spreadsheet would run as formulas (the simulated agent `=sales-assistant`) are quoted with
/// a leading `'`.
#[actix_web::test]
async fn csv_is_an_attachment_and_guards_formulas() {
    let r = start(Utc::now()).await;
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/v1/usage?start=2026-01-01T00:00:00Z&end=now&format=csv&group_by=source,agent,user,usage_type",
            r.base
        ))
        .bearer_auth(&r.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let disposition = resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"usage-20260101T000000Z-")
            && disposition.ends_with("Z.csv\""),
        "{disposition}"
    );
    let body = resp.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header = reader.headers().unwrap().clone();
    let name_col = header.iter().position(|h| h == "agent_name").unwrap();
    let mut guarded = 0;
    for rec in reader.records() {
        let rec = rec.unwrap();
        for (i, cell) in rec.iter().enumerate() {
            let numeric = cell.parse::<u64>().is_ok();
            assert!(
                numeric || !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "cell {i} `{cell}` would run as a formula"
            );
        }
        if &rec[name_col] == "'=sales-assistant" {
            guarded += 1;
        }
    }
    assert!(
        guarded > 0,
        "the simulated `=sales-assistant` appears, guarded:\n{body}"
    );
}

/// `fill=zero` gives every bucket of every group a row and changes no total; `bucket_edges=local`
/// writes a Berlin day's edges with their offset.
#[actix_web::test]
async fn fill_zero_and_local_edges() {
    let now = Utc::now();
    let r = start(now).await;
    let today = now.duration_trunc(CDuration::days(1)).unwrap();
    let range = format!(
        "start={}&end={}&tz=Europe/Berlin&group_by=source,agent",
        (today - CDuration::days(3)).format("%Y-%m-%d"),
        today.format("%Y-%m-%d")
    );
    let sparse = usage(&r, &format!("{range}&bucket=hour")).await;
    let filled = usage(&r, &format!("{range}&bucket=hour&fill=zero")).await;
    assert_eq!(filled["query"]["fill"], "zero");
    assert_eq!(filled["totals"], sparse["totals"]);
    let rows = |v: &Value| v["rows"].as_array().unwrap().clone();
    let group = |row: &Value| {
        (
            row["source"].to_string(),
            row["agent"].to_string(),
            row["unit"].to_string(),
        )
    };
    let groups: std::collections::BTreeSet<_> = rows(&sparse).iter().map(group).collect();
    let buckets: std::collections::BTreeSet<_> = rows(&filled)
        .iter()
        .map(|row| row["bucket_start"].as_str().unwrap().to_owned())
        .collect();
    // Three Berlin days, whatever DST did to them: 71, 72 or 73 hours.
    assert!((71..=73).contains(&buckets.len()), "{}", buckets.len());
    assert_eq!(rows(&filled).len(), groups.len() * buckets.len());
    assert!(
        rows(&filled).len() > rows(&sparse).len(),
        "some hours had no usage"
    );
    // Every sparse row is in the filled answer unchanged.
    for row in rows(&sparse) {
        assert!(rows(&filled).contains(&row), "{row}");
    }

    let local = usage(&r, &format!("{range}&bucket=day&bucket_edges=local")).await;
    let utc = usage(&r, &format!("{range}&bucket=day")).await;
    assert_eq!(local["query"]["bucket_edges"], "local");
    assert_eq!(rows(&local).len(), rows(&utc).len());
    for (l, u) in rows(&local).iter().zip(rows(&utc)) {
        let start = l["bucket_start"].as_str().unwrap();
        assert!(
            start.ends_with("T00:00:00+01:00") || start.ends_with("T00:00:00+02:00"),
            "{start}"
        );
        // The same instants, written with the offset.
        let instant = |v: &Value| DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
        assert_eq!(instant(&l["bucket_start"]), instant(&u["bucket_start"]));
        assert_eq!(instant(&l["bucket_end"]), instant(&u["bucket_end"]));
        assert!(u["bucket_start"].as_str().unwrap().ends_with('Z'));
        assert_eq!(l["total_tokens"], u["total_tokens"]);
    }
}
