//! `usage-sim`: serves the three vendor simulators until Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use usage_sim::{
    CBK_TOKEN, DO_TOKEN, DataSpec, Dataset, DoOptions, KIBANA_API_KEY, KIBANA_PASSWORD,
    KIBANA_USERNAME,
};

/// Data set sizes.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scale {
    /// A few agents and a few hundred events each (tests).
    Small,
    /// 20 000 conversations per Kibana agent, 100 000 ChatBotKit records (benchmarks).
    Bench,
}

/// Serves simulated DigitalOcean, Kibana, ChatBotKit, OpenAI and Anthropic usage APIs on
/// 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "usage-sim", version)]
struct Args {
    /// Address of the DigitalOcean simulator.
    #[arg(long, default_value = "127.0.0.1:0")]
    do_addr: SocketAddr,
    /// Address of the Kibana simulator.
    #[arg(long, default_value = "127.0.0.1:0")]
    kibana_addr: SocketAddr,
    /// Address of the ChatBotKit simulator.
    #[arg(long, default_value = "127.0.0.1:0")]
    cbk_addr: SocketAddr,
    /// Address of the OpenAI simulator.
    #[arg(long, default_value = "127.0.0.1:0")]
    openai_addr: SocketAddr,
    /// Address of the Anthropic simulator.
    #[arg(long, default_value = "127.0.0.1:0")]
    anthropic_addr: SocketAddr,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Days of usage history up to now.
    #[arg(long, default_value_t = 90)]
    span_days: u32,
    /// Data set size.
    #[arg(long, value_enum, default_value = "small")]
    scale: Scale,
    /// DigitalOcean requests per token per minute before 429 (0 = unlimited).
    #[arg(long, default_value_t = 250)]
    do_rate_limit: u32,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let now = chrono::Utc::now();
    let mut spec = match args.scale {
        Scale::Small => DataSpec::small(now),
        Scale::Bench => DataSpec::bench(now),
    };
    spec.seed = args.seed;
    spec.span = chrono::Duration::days(i64::from(args.span_days.max(1)));
    let data = Arc::new(Dataset::generate(&spec));
    let opts = DoOptions {
        rate_limit_per_minute: args.do_rate_limit,
    };
    let digitalocean =
        usage_sim::start_digitalocean(data.clone(), opts, Some(args.do_addr)).await?;
    let kibana = usage_sim::start_kibana(data.clone(), Some(args.kibana_addr)).await?;
    let chatbotkit = usage_sim::start_chatbotkit(data.clone(), Some(args.cbk_addr)).await?;
    let openai = usage_sim::start_openai(data.clone(), Some(args.openai_addr)).await?;
    let anthropic = usage_sim::start_anthropic(data.clone(), Some(args.anthropic_addr)).await?;
    println!(
        "DigitalOcean  {}  (Authorization: Bearer {DO_TOKEN})",
        digitalocean.base_url
    );
    println!(
        "Kibana        {}  (Authorization: ApiKey {KIBANA_API_KEY}, or Basic {KIBANA_USERNAME}:{KIBANA_PASSWORD}; spaces: {})",
        kibana.base_url,
        spec.kibana_spaces.join(", ")
    );
    println!(
        "ChatBotKit    {}  (Authorization: Bearer {CBK_TOKEN})",
        chatbotkit.base_url
    );
    println!(
        "OpenAI        {}  (Authorization: Bearer {})",
        openai.base_url,
        usage_sim::OPENAI_ADMIN_KEY
    );
    println!(
        "Anthropic     {}  (x-api-key: {}, anthropic-version: {})",
        anthropic.base_url,
        usage_sim::ANTHROPIC_ADMIN_KEY,
        usage_sim::ANTHROPIC_VERSION
    );
    println!("Serving until Ctrl-C.");
    tokio::signal::ctrl_c().await?;
    digitalocean.stop().await;
    kibana.stop().await;
    chatbotkit.stop().await;
    openai.stop().await;
    anthropic.stop().await;
    Ok(())
}
