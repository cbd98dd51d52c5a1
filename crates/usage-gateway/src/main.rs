//! The `usage-gateway` command line: `serve`, `demo`, `sync`, `openapi`, `check-config`,
//! `healthcheck`, `token`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use usage_gateway::config::{AuthConfig, Config};
use usage_gateway::state::AppState;
use usage_gateway::{auth, openapi, registry, server};

#[derive(Debug, Parser)]
#[command(
    name = "usage-gateway",
    version,
    about = "One endpoint for AI agent token usage across vendors"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, default_value = "pretty", value_parser = ["pretty", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the API with a configuration file.
    Serve {
        /// The TOML configuration file.
        #[arg(long, short, env = "USAGE_GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Starts the three vendor simulators in-process and the gateway on the demo config, and
    /// prints a dev token and ready `curl` commands.
    Demo {
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Latency every simulated vendor adds to each answer (e.g. `300ms`), to watch the fan-out.
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        sim_latency: std::time::Duration,
    },
    /// Fills the usage store once (a one-shot backfill) with a progress bar per source and a
    /// summary, then exits: 0 when every source is done, 1 otherwise.
    Sync {
        /// The TOML configuration file (its `[store]` is filled).
        #[arg(long, short, env = "USAGE_GATEWAY_CONFIG")]
        config: PathBuf,
        /// Only this source (repeatable); default every stored source.
        #[arg(long)]
        source: Vec<String>,
        /// How far back (e.g. `90d`); default `store.backfill`.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
    },
    /// Prints the OpenAPI document.
    Openapi,
    /// Validates a configuration file (including building every source) and exits.
    CheckConfig {
        /// The TOML configuration file.
        config: PathBuf,
    },
    /// Asks a running gateway's `/healthz` and exits 0 when it answers 200 (for container
    /// health checks: the runtime image needs no HTTP client of its own).
    Healthcheck {
        /// The address the gateway listens on; an unspecified host (`0.0.0.0`) means this host.
        #[arg(long, env = "USAGE_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Mints a short-lived development token with the configured HS256 secret. Only the file's
    /// `[auth]` table (and the environment variables it references) must be valid.
    Token {
        /// The TOML configuration file.
        #[arg(long, short, env = "USAGE_GATEWAY_CONFIG")]
        config: PathBuf,
        /// The `sub` claim.
        #[arg(long)]
        sub: String,
        /// An extra claim `key=value`, repeatable. The value is always a JSON string (`3`,
        /// `true` or `[1]` included); a key given twice or more becomes an array of strings.
        /// `sub`, `scope`, `iss`, `aud`, `exp`, `iat` and `nbf` are refused.
        #[arg(long = "claim", value_name = "KEY=VALUE", value_parser = claim_arg)]
        claims: Vec<(String, String)>,
        /// A scope, repeatable; all are space-joined into `scope`. Default: `auth.required_scope`.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
}

/// Parses one `--claim key=value` (split at the first `=`).
fn claim_arg(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err("expected key=value".to_owned()),
    }
}

/// Installs the log subscriber. Lines are batched in memory and written by a flusher thread
/// every 100 ms or per 64 KiB (see [`usage_gateway::logsink`]), so a request never waits on a
/// `write` to stderr, even a blocked one, until 16 MiB of lines are pending; nothing is dropped.
/// Keep the guard until exit: dropping it writes what is left.
fn init_logs(format: &str) -> Option<usage_gateway::logsink::FlushGuard> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let (writer, guard) = match usage_gateway::logsink::BatchWriter::new(std::io::stderr()) {
        Ok((w, g)) => (BoxMakeWriter::new(w), Some(g)),
        Err(e) => {
            eprintln!("cannot start the log flusher thread ({e}); logging unbatched");
            (BoxMakeWriter::new(std::io::stderr), None)
        }
    };
    usage_gateway::logsink::install(format, writer);
    guard
}

/// GETs `http://<listen>/healthz` (an unspecified host becomes loopback) within `timeout`.
fn healthcheck(
    mut listen: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> Result<(), String> {
    if listen.ip().is_unspecified() {
        listen.set_ip(if listen.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let url = format!("http://{listen}/healthz");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build a client: {e}"))?;
        let status = client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{url} answered {status}"))
        }
    })
}

fn load(path: &std::path::Path) -> Result<(Config, Vec<usage_gateway::fetch::SourceSpec>), String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let providers = registry::build_providers(&config).map_err(|e| e.to_string())?;
    Ok((config, providers))
}

/// Installs the logs, loads the configuration file and builds its sources, then runs `command`;
/// a file that does not load exits 2 with its errors.
fn with_loaded(
    log_format: &str,
    path: &std::path::Path,
    command: impl FnOnce(Config, Vec<usage_gateway::fetch::SourceSpec>) -> ExitCode,
) -> ExitCode {
    let _logs = init_logs(log_format);
    match load(path) {
        Ok((config, providers)) => command(config, providers),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo {
            listen,
            sim_latency,
        } => {
            let _logs = init_logs(&cli.log_format);
            match usage_gateway::demo::run(listen, sim_latency) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sync {
            config,
            source,
            since,
        } => with_loaded(&cli.log_format, &config, |c, p| sync(&c, p, &source, since)),
        Command::Openapi => {
            print!("{}", openapi::document_json());
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config } => {
            match load(&config).and_then(|(c, p)| AppState::new(c, p).map_err(|e| e.to_string())) {
                Ok(state) => {
                    println!(
                        "{}: ok ({} sources, {} access entries)",
                        config.display(),
                        state.sources.len(),
                        state.config_access.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Healthcheck { listen, timeout } => match healthcheck(listen, timeout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Token {
            config,
            sub,
            claims,
            scopes,
        } => {
            let auth = match AuthConfig::load(&config) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let extra = auth::DevClaims { scopes, claims };
            match auth::mint_token(&auth, &sub, &extra, chrono::Utc::now().timestamp()) {
                Ok(t) => {
                    println!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve { config } => with_loaded(&cli.log_format, &config, serve),
    }
}

/// `usage-gateway sync`.
fn sync(
    config: &Config,
    providers: Vec<usage_gateway::fetch::SourceSpec>,
    only: &[String],
    since: Option<std::time::Duration>,
) -> ExitCode {
    use std::sync::Arc;
    let Some(store_config) = config.store.clone() else {
        eprintln!("the configuration has no [store] table: there is nothing to sync into");
        return ExitCode::from(2);
    };
    let settle = config.cache.settle;
    let sources: Vec<Arc<usage_gateway::fetch::Source>> = providers
        .into_iter()
        .map(|p| Arc::new(usage_gateway::fetch::Source::new(p)))
        .collect();
    let unknown: Vec<&String> = only
        .iter()
        .filter(|n| !sources.iter().any(|s| &s.info.name == *n))
        .collect();
    if !unknown.is_empty() {
        eprintln!("--source: no source named {unknown:?} in the configuration");
        return ExitCode::from(2);
    }
    let chosen: Vec<_> = sources
        .into_iter()
        .filter(|s| only.is_empty() || only.contains(&s.info.name))
        .collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let handle = match usage_gateway::stored::StoreHandle::start(store_config).await {
            Ok(h) if h.get().is_some() => h,
            Ok(h) => {
                eprintln!(
                    "the usage store ({}) cannot be reached: {}",
                    h.shown,
                    h.last_error().map(|(_, m)| m).unwrap_or_default()
                );
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        let started = std::time::Instant::now();
        let summary = usage_gateway::sync::one_shot(&handle, &chosen, since, settle).await;
        println!("synced into {} ({}):", handle.shown, handle.engine);
        for s in &summary {
            println!(
                "  {:<20} {:>6} {} stored, {:>6} vendor requests: {}",
                s.source, s.windows, s.unit, s.requests, s.outcome
            );
        }
        println!("in {:.1}s", started.elapsed().as_secs_f64());
        if summary
            .iter()
            .all(|s| s.outcome == "done" || s.outcome.starts_with("skipped: the provider"))
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

fn serve(config: Config, providers: Vec<usage_gateway::fetch::SourceSpec>) -> ExitCode {
    let mut state = match AppState::new(config, providers) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    actix_web::rt::System::new().block_on(async move {
        // A schema this build does not know, or a wrong location, stops start-up (exit 2); an
        // unreachable store is opened in the background.
        if let Err(e) = state.open_store().await {
            eprintln!("cannot use the usage store: {e}");
            return ExitCode::from(2);
        }
        let store = state.store.clone();
        let names = state.source_names.clone();
        let budgets_on_main = !state.budgets.is_empty() && state.server.metrics_listen.is_none();
        let run = async {
            let bound = server::bind(state)?;
            tracing::info!(addr = %bound.addr, metrics = ?bound.metrics_addr, "usage-gateway listening");
            if budgets_on_main {
                // /metrics has no authentication: budget names and ratios (which may name
                // agents and users) are then served to anyone who reaches the main listener.
                tracing::warn!(
                    "budgets are configured and /metrics is served on the main listener without \
                     authentication: set server.metrics_listen to a private address"
                );
            }
            bound.run().await
        };
        let result = run.await;
        if let Some(store) = store {
            store.release_leases(&names).await;
        }
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("server error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
