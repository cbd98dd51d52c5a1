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
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/usage?{query}", r.base))
        .bearer_auth(&r.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{query}");
    resp.json().await.unwrap()
}

fn counters(row: &Value) -> Counters {
    Counters {
        input: row["input_tokens"].as_u64().unwrap(),
        output: row["output_tokens"].as_u64().unwrap(),
        other: row["other_tokens"].as_u64().unwrap(),
    }
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
            "chatbotkit",
            "do-prod",
            "kibana-default",
            "kibana-marketing"
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
    assert_eq!(v["sources"].as_array().unwrap().len(), 4);
    let r = client.get(format!("{base}/docs/")).send().await.unwrap();
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
