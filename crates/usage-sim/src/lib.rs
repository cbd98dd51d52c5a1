//! `usage-sim`: faithful in-process simulators of the DigitalOcean Gen-AI, Kibana Agent Builder,
//! ChatBotKit and Anthropic Admin usage APIs (quirks included, see `shared/vendors/CONTRACTS.md`
//! and `CONTRACTS-openai-anthropic.md`), fed by
//! deterministic data with an exact ground truth, plus fault injection and request counters.
//!
//! # Public API
//! - Credentials: [`DO_TOKEN`] (`Authorization: Bearer …`), [`KIBANA_API_KEY`]
//!   (`Authorization: ApiKey …`), [`KIBANA_USERNAME`]/[`KIBANA_PASSWORD`] (`Basic`),
//!   [`CBK_TOKEN`] (`Authorization: Bearer …`), [`OPENAI_ADMIN_KEY`] (`Authorization: Bearer …`;
//!   [`OPENAI_PROJECT_KEY`] is a non-admin key, answered 403), [`ANTHROPIC_ADMIN_KEY`]
//!   (`x-api-key: …`, with `anthropic-version: 2023-06-01`).
//! - Data: [`DataSpec`] (`small`, `bench`), [`Dataset::generate`] with [`DoData`],
//!   [`KibanaData`] (conversations with their [`KibanaRound`]s,
//!   [`KibanaConversation::as_of`]), [`CbkData`], [`OpenAiData`] (projects, users, minute
//!   [`OpenAiEvent`]s per [`OpenAiEndpoint`]; `legacy_completions` switches completions to the
//!   legacy schema).
//! - Ground truth: [`TruthFilter`], [`DoData::truth`], [`KibanaData::truth`],
//!   [`KibanaData::truth_rounds`] (when Kibana usage happened), [`KibanaData::truth_as_of`]
//!   (what the Kibana simulator shows with its clock set), [`KibanaData::warnings`],
//!   [`CbkData::truth`], [`OpenAiData::truth`] and [`OpenAiData::truth_by`] (split by
//!   dimensions), [`AnthropicData::truth`] (per unit; agent `default` is the default
//!   workspace, user an API key id; [`ANTHROPIC_USAGE_TYPES`] name the usage types);
//!   costs: [`OpenAiData::cost_truth`] and [`AnthropicData::cost_truth`] (exact decimals per
//!   currency, from the events and the simulators' price lists: [`OpenAiEvent::cost_items`],
//!   [`AnthropicEvent::cost_items`]).
//! - Servers: [`start_digitalocean`] (with [`DoOptions`]), [`start_kibana`],
//!   [`start_chatbotkit`], [`start_openai`], [`start_anthropic`] (or [`start_anthropic_with`]
//!   and [`AnthropicOptions`]: its per-minute limit), [`start_all`] (or [`start_all_with`]) →
//!   [`Simulators`]; each returns a [`SimHandle`] with
//!   `base_url`, [`SimHandle::faults`], [`SimHandle::calls`], [`SimHandle::total_calls`],
//!   [`SimHandle::reset_calls`], [`SimHandle::set_clock`] (Kibana answers as of an instant)
//!   and [`SimHandle::stop`].
//! - Faults: [`Faults`] (latency, error rate, forced statuses, `LIMITS_REACHED`, hang,
//!   malformed JSON, truncated bodies, 429 without `retry-after`, a per-minute [`RateLimit`]
//!   with or without `Retry-After` for OpenAI) and [`CursorEnd`] (ChatBotKit's last-page
//!   cursor).
//!
//! Route names for [`SimHandle::calls`]: `do.agents`, `do.usage`, `kibana.agents`,
//! `kibana.consumption`, `cbk.bots`, `cbk.usage_list`, `cbk.bot_usage`, `openai.projects`,
//! `openai.usage.<endpoint>` (e.g. `openai.usage.completions`, `openai.usage.vector_stores`),
//! `openai.costs`, `anthropic.usage`, `anthropic.cost_report`, `anthropic.workspaces` (and
//! `unknown` for paths no route matches).
//!
//! Servers run on the caller's Tokio runtime (multi- or current-thread `#[tokio::test]`, or an
//! `#[actix_web::main]` program) with one actix worker thread each.

mod anthropic;
mod chatbotkit;
pub mod data;
mod digitalocean;
mod faults;
mod kibana;
mod openai;
mod server;

pub use anthropic::ANTHROPIC_VERSION;
pub use chatbotkit::{DEFAULT_TAKE as CBK_DEFAULT_TAKE, MAX_TAKE as CBK_MAX_TAKE};
pub use data::{
    ANTHROPIC_DEFAULT_WORKSPACE, ANTHROPIC_FRESHNESS, ANTHROPIC_USAGE_TYPES, AnthropicApiKey,
    AnthropicData, AnthropicEvent, AnthropicWorkspace, BASE_TYPE, CbkBot, CbkData, CbkRecord,
    DataSpec, Dataset, DoAgent, DoData, DoEvent, EMBEDDING_TYPE, HIGH_INPUT_TOKENS, KibanaAgent,
    KibanaConversation, KibanaData, KibanaRound, KibanaWarning, OpenAiData, OpenAiEndpoint,
    OpenAiEvent, OpenAiProject, TruthFilter,
};
pub use data::{AnthropicCostItem, OpenAiCostItem, OpenAiTokens};
pub use digitalocean::ZERO_TIME;
pub use faults::{CursorEnd, Faults, RateLimit, TakeLimit};
pub use server::{
    AnthropicOptions, DoOptions, SimHandle, Simulators, start_all, start_all_with, start_anthropic,
    start_anthropic_with, start_chatbotkit, start_digitalocean, start_kibana, start_openai,
};

/// The DigitalOcean token: `Authorization: Bearer sim-do-token`.
pub const DO_TOKEN: &str = "sim-do-token";
/// The Kibana API key: `Authorization: ApiKey sim-kibana-api-key`.
pub const KIBANA_API_KEY: &str = "sim-kibana-api-key";
/// The Kibana basic-auth user: `Authorization: Basic base64(elastic:sim-kibana-password)`.
pub const KIBANA_USERNAME: &str = "elastic";
/// The Kibana basic-auth password.
pub const KIBANA_PASSWORD: &str = "sim-kibana-password";
/// The ChatBotKit token: `Authorization: Bearer sim-cbk-token`.
pub const CBK_TOKEN: &str = "sim-cbk-token";
/// The Anthropic admin key: `x-api-key: sim-anthropic-admin-key`.
pub const ANTHROPIC_ADMIN_KEY: &str = "sim-anthropic-admin-key";
/// The OpenAI admin key: `Authorization: Bearer sim-openai-admin-key`.
pub const OPENAI_ADMIN_KEY: &str = "sim-openai-admin-key";
/// An OpenAI project (non-admin) key: the usage and projects routes answer it 403.
pub const OPENAI_PROJECT_KEY: &str = "sim-openai-project-key";
