//! Secrets (vendor credentials, the HS256 secret, callers' tokens) never show in logs, error
//! bodies, `/v1/sources`, `/v1/agents`, `/metrics` or `Debug` output, even while vendors fail.

use std::time::Duration;

use actix_web::{test, web};
use chrono::Utc;
use usage_gateway::auth::mint_dev_token;
use usage_gateway::config::Config;
use usage_gateway::registry::build_providers;
use usage_gateway::state::AppState;
use usage_sim::DataSpec;

use crate::common::Captured;

const HS_SECRET: &str = "SENTINEL-HS256-SECRET-5c1e-0123456789abcdef";
const BAD_DO: &str = "SENTINEL-DO-TOKEN-5c1e";
const BAD_KB_KEY: &str = "SENTINEL-KIBANA-KEY-5c1e";
const BAD_KB_PASSWORD: &str = "SENTINEL-KIBANA-PASSWORD-5c1e";
const BAD_CBK: &str = "SENTINEL-CBK-TOKEN-5c1e";

fn config_text(sims: &usage_sim::Simulators) -> String {
    let (d, k, c) = (
        &sims.digitalocean.base_url,
        &sims.kibana.base_url,
        &sims.chatbotkit.base_url,
    );
    format!(
        r#"
[server]
request_timeout = "5s"
[auth]
algorithms = ["HS256"]
hs256_secret = "{HS_SECRET}"
[[access]]
claim = "sub"
value = "ops"
sources = ["*"]
[[sources]]
name = "do-bad"
provider = "digitalocean"
base_url = "{d}"
token = "{BAD_DO}"
max_attempts = 2
retry_min_delay = "10ms"
retry_max_delay = "20ms"
[[sources]]
name = "do-faulty"
provider = "digitalocean"
base_url = "{d}"
token = "{do_good}"
max_attempts = 2
retry_min_delay = "10ms"
retry_max_delay = "20ms"
[[sources]]
name = "kb-bad-key"
provider = "kibana"
base_url = "{k}"
api_key = "{BAD_KB_KEY}"
[[sources]]
name = "kb-bad-password"
provider = "kibana"
base_url = "{k}"
space = "marketing"
username = "elastic"
password = "{BAD_KB_PASSWORD}"
[[sources]]
name = "kb-faulty"
provider = "kibana"
base_url = "{k}"
api_key = "{kb_good}"
max_attempts = 1
[[sources]]
name = "cbk-bad"
provider = "chatbotkit"
base_url = "{c}"
token = "{BAD_CBK}"
[[sources]]
name = "cbk-faulty"
provider = "chatbotkit"
base_url = "{c}"
token = "{cbk_good}"
max_attempts = 1
"#,
        do_good = usage_sim::DO_TOKEN,
        kb_good = usage_sim::KIBANA_API_KEY,
        cbk_good = usage_sim::CBK_TOKEN,
    )
}

fn basic(user: &str, password: &str) -> String {
    crate::jose::b64(format!("{user}:{password}").as_bytes())
}

#[actix_web::test]
async fn secrets_never_leak_while_vendors_fail() {
    let sims = usage_sim::start_all(&DataSpec::small(Utc::now()))
        .await
        .unwrap();
    // Vendors with good credentials fail too: 500s, malformed JSON, truncated bodies.
    sims.digitalocean.faults().set_error_rate(1.0);
    sims.kibana.faults().set_malformed_json(true);
    sims.chatbotkit.faults().set_truncated(true);

    let config = Config::parse(&config_text(&sims), &|_| None).unwrap();
    let caller = mint_dev_token(&config.auth, "ops", Utc::now().timestamp()).unwrap();
    let debug_config = format!("{config:?} {:?}", config.auth);
    let specs = build_providers(&config).unwrap();
    let debug_providers = format!(
        "{:?}",
        specs.iter().map(|s| s.provider.clone()).collect::<Vec<_>>()
    );
    let state = web::Data::new(AppState::new(config, specs).unwrap());
    let debug_state = format!("{state:?}");

    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let guard = crate::common::scoped_subscriber(subscriber);

    let app = crate::common::app_of(state.clone(), true).await;
    let mut bodies = Vec::new();
    for uri in [
        "/v1/usage?bucket=day",
        "/v1/usage?group_by=source,user&format=csv",
        "/v1/agents",
        "/v1/sources",
        "/metrics",
        "/v1/usage?source=nope",
    ] {
        let req = test::TestRequest::get()
            .uri(uri)
            .insert_header(("Authorization", format!("Bearer {caller}")))
            .to_request();
        let resp = test::call_service(&app, req).await;
        let status = resp.status().as_u16();
        let body = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
        bodies.push(format!("{uri} {status} {body}"));
    }
    // Every vendor call failed (or was refused): the error paths did run.
    let usage = &bodies[0];
    assert!(usage.contains(" 502 "), "{usage}");
    for name in [
        "do-bad",
        "kb-bad-key",
        "kb-bad-password",
        "cbk-bad",
        "do-faulty",
        "kb-faulty",
        "cbk-faulty",
    ] {
        assert!(usage.contains(name), "{name} missing: {usage}");
    }
    // A wrong HS256 key does not echo the secret either.
    let req = test::TestRequest::get()
        .uri("/v1/sources")
        .insert_header(("Authorization", format!("Bearer {HS_SECRET}")))
        .to_request();
    let resp = test::call_service(&app, req).await;
    bodies.push(String::from_utf8(test::read_body(resp).await.to_vec()).unwrap());
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(guard);

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("source failed"),
        "the failures were logged:\n{logs}"
    );
    let needles = [
        HS_SECRET.to_owned(),
        BAD_DO.to_owned(),
        BAD_KB_KEY.to_owned(),
        BAD_KB_PASSWORD.to_owned(),
        BAD_CBK.to_owned(),
        basic("elastic", BAD_KB_PASSWORD),
        usage_sim::DO_TOKEN.to_owned(),
        usage_sim::KIBANA_API_KEY.to_owned(),
        usage_sim::CBK_TOKEN.to_owned(),
        caller.clone(),
        caller.rsplit('.').next().unwrap().to_owned(),
    ];
    for (what, text) in [
        ("logs", &logs),
        ("bodies", &bodies.join("\n")),
        ("Debug of Config/AuthConfig", &debug_config),
        ("Debug of the providers", &debug_providers),
        ("Debug of the app state", &debug_state),
    ] {
        for n in &needles {
            assert!(!text.contains(n.as_str()), "{what} contain `{n}`:\n{text}");
        }
    }
}
