//! `usage-gateway demo`: the five vendor simulators in-process, the embedded
//! `config/demo.toml`, a printed dev token and ready-to-paste `curl` commands.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;

use crate::auth::mint_dev_token;
use crate::config::Config;
use crate::registry;
use crate::server;
use crate::state::AppState;

/// The embedded demo configuration.
pub const DEMO_CONFIG: &str = include_str!("../../../config/demo.toml");

/// Fills the demo config's `${SIM_*}`/`${DEMO_*}` values from running simulators; the store is
/// at `store` (an SQLite file path, or any `[store] url`).
pub fn demo_values(
    sims: &usage_sim::Simulators,
    listen: SocketAddr,
    secret: &str,
    store: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("DEMO_LISTEN".to_owned(), listen.to_string()),
        ("DEMO_STORE".to_owned(), store.to_owned()),
        ("DEMO_JWT_SECRET".to_owned(), secret.to_owned()),
        (
            "SIM_DIGITALOCEAN_URL".to_owned(),
            sims.digitalocean.base_url.clone(),
        ),
        (
            "SIM_DIGITALOCEAN_TOKEN".to_owned(),
            usage_sim::DO_TOKEN.to_owned(),
        ),
        ("SIM_KIBANA_URL".to_owned(), sims.kibana.base_url.clone()),
        (
            "SIM_KIBANA_API_KEY".to_owned(),
            usage_sim::KIBANA_API_KEY.to_owned(),
        ),
        (
            "SIM_KIBANA_USERNAME".to_owned(),
            usage_sim::KIBANA_USERNAME.to_owned(),
        ),
        (
            "SIM_KIBANA_PASSWORD".to_owned(),
            usage_sim::KIBANA_PASSWORD.to_owned(),
        ),
        (
            "SIM_CHATBOTKIT_URL".to_owned(),
            sims.chatbotkit.base_url.clone(),
        ),
        (
            "SIM_CHATBOTKIT_TOKEN".to_owned(),
            usage_sim::CBK_TOKEN.to_owned(),
        ),
        ("SIM_OPENAI_URL".to_owned(), sims.openai.base_url.clone()),
        (
            "SIM_OPENAI_ADMIN_KEY".to_owned(),
            usage_sim::OPENAI_ADMIN_KEY.to_owned(),
        ),
        (
            "SIM_ANTHROPIC_URL".to_owned(),
            sims.anthropic.base_url.clone(),
        ),
        (
            "SIM_ANTHROPIC_ADMIN_KEY".to_owned(),
            usage_sim::ANTHROPIC_ADMIN_KEY.to_owned(),
        ),
    ])
}

/// Parses the embedded demo config with the given values.
pub fn demo_config(values: &BTreeMap<String, String>) -> Result<Config, String> {
    Config::parse(DEMO_CONFIG, &|k| values.get(k).cloned()).map_err(|e| e.to_string())
}

/// Runs the demo until Ctrl-C (or SIGTERM), with `sim_latency` added to every vendor answer.
pub fn run(listen: SocketAddr, sim_latency: Duration) -> Result<(), String> {
    actix_web::rt::System::new().block_on(async move {
        let spec = usage_sim::DataSpec::small(Utc::now());
        let mut sims = usage_sim::start_all(&spec)
            .await
            .map_err(|e| format!("cannot start the simulators: {e}"))?;
        // Anthropic's simulator at 600 requests a minute (its default 60 models the real
        // Admin API's polling guidance): the demo's usage, cost report and budget queries
        // would spend 60 in a few clicks.
        sims.restart_anthropic(usage_sim::AnthropicOptions {
            rate_limit_per_minute: 600,
            ..usage_sim::AnthropicOptions::default()
        })
        .await
        .map_err(|e| format!("cannot start the simulators: {e}"))?;
        for s in sims.handles() {
            s.faults().set_latency(sim_latency, Duration::ZERO);
        }
        // A fresh secret per run, so demo tokens are worthless outside this process, unless
        // `DEMO_JWT_SECRET` is set: then `usage-gateway token --config config/demo.toml` with
        // the same variable mints tokens (other claims, other scopes) for this demo.
        let secret = std::env::var("DEMO_JWT_SECRET").unwrap_or_else(|_| {
            format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("usage-gateway-demo-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory for the store: {e}"))?;
        let store = dir.path().join("usage.sqlite");
        let location = store.display().to_string();
        let config = demo_config(&demo_values(&sims, listen, &secret, &location))?;
        let token = mint_dev_token(&config.auth, "demo", Utc::now().timestamp())?;
        let providers = registry::build_providers(&config).map_err(|e| e.to_string())?;
        let mut state = AppState::new(config, providers).map_err(|e| e.to_string())?;
        state
            .open_store()
            .await
            .map_err(|e| format!("cannot open the demo's store: {e}"))?;
        let bound = server::bind(state)
            .map_err(|e| format!("cannot listen on {listen}: {e} (try --listen 127.0.0.1:0)"))?;
        let base = format!("http://{}", bound.addr);
        // The banner is for people: a reader that stops early (a closed stdout) must not take
        // the running demo down, as a panicking `println!` would.
        let mut out = std::io::stdout().lock();
        let _ =
            writeln!(out, "{}", banner(&base, &token, &sims, &store)).and_then(|()| out.flush());
        drop(out);
        let result = bound.run().await.map_err(|e| format!("server error: {e}"));
        sims.stop().await;
        result
    })
}

/// The requests the banner suggests: path and query, and whether they send the token (the
/// last one shows the 401 without it). A test sends each as printed.
pub const EXAMPLES: &[(&str, bool)] = &[
    ("/v1/usage", true),
    ("/v1/usage?bucket=day&group_by=source,agent", true),
    (
        "/v1/usage?group_by=source,user&source=kibana-default,chatbotkit",
        true,
    ),
    ("/v1/usage?bucket=week&tz=Europe/Berlin&format=csv", true),
    // Per model, across the vendors that name one (OpenAI, Anthropic, DigitalOcean).
    ("/v1/usage?group_by=provider,model", true),
    // Today so far, hour by hour in Berlin time, every hour present, edges with the offset.
    (
        "/v1/usage?start=today&end=now&bucket=hour&fill=zero&tz=Europe/Berlin&bucket_edges=local",
        true,
    ),
    // Money (every answer carries it): today's cost so far per source and model (OpenAI's and
    // Anthropic's cost reports, the demo's prices for the others), the last 7 days as a FOCUS
    // 1.2 file, and the demo's monthly budgets.
    ("/v1/usage?start=today&end=now&group_by=source,model", true),
    ("/v1/usage/focus?bucket=day&group_by=agent", true),
    ("/v1/budgets", true),
    ("/v1/agents", true),
    ("/v1/sources", true),
    ("/v1/usage", false),
];

fn banner(
    base: &str,
    token: &str,
    sims: &usage_sim::Simulators,
    store: &std::path::Path,
) -> String {
    let examples: Vec<String> = EXAMPLES
        .iter()
        .map(|(path, authorized)| {
            if *authorized {
                format!("  curl -s -H \"Authorization: Bearer $TOKEN\" '{base}{path}'")
            } else {
                format!("  curl -si '{base}{path}'        # 401 without a token")
            }
        })
        .collect();
    let examples = examples.join("\n");
    format!(
        r"
usage-gateway demo is running at {base}
  simulated vendors: DigitalOcean {do_url}, Kibana {kb_url}, ChatBotKit {cbk_url},
    OpenAI {openai_url}, Anthropic {anthropic_url}
  API docs (Swagger UI): {base}/docs/
  usage page (charts; paste the token below into it): {base}/ui
  usage store (SQLite, removed on exit): {store}
    the last 7 days of DigitalOcean, ChatBotKit, OpenAI and Anthropic are synced into it in
    the background;
    `/v1/sources` shows the progress, `store_coverage` in each answer what came from it

A development token (sub=demo, scope usage:read, valid 12h for this run only):

export TOKEN='{token}'

Try:
{examples}

Stop with Ctrl-C.
",
        do_url = sims.digitalocean.base_url,
        kb_url = sims.kibana.base_url,
        cbk_url = sims.chatbotkit.base_url,
        openai_url = sims.openai.base_url,
        anthropic_url = sims.anthropic.base_url,
        store = store.display(),
    )
}
