//! `usage-provider-chatbotkit`: the [`usage_core::UsageProvider`] for the ChatBotKit platform API
//! (`vendors/CONTRACTS.md` §3).
//!
//! ```no_run
//! # async fn demo() -> Result<(), usage_core::ProviderError> {
//! use usage_core::UsageProvider;
//! use usage_provider_chatbotkit::{ChatbotkitProvider, Config};
//!
//! let config: Config = toml::from_str(r#"token = "sk-…""#).expect("valid config");
//! let provider = ChatbotkitProvider::new("cbk-prod", config, reqwest::Client::new())?;
//! let bots = provider.agents().await?;
//! # let _ = bots;
//! # Ok(())
//! # }
//! ```
//!
//! # What it reads
//! - **Bots**: the configured `agents` list, or `GET /v1/bot/list?take&order=desc&cursor`
//!   (cursor paging with the same end rules as below, cached for `discovery_ttl`). With a fixed
//!   list the source covers only those bots; add `"(unattributed)"` to the list to include
//!   records without a bot. Discovery feeds `agent_name`; when it fails during `usage`, the
//!   numbers are still returned, without names and with a note.
//! - **Range mode**: `GET /v1/bot/{botId}/usage/fetch?from&to` per bot and window. `from` is the
//!   window start and `to` its end minus one millisecond, both ISO 8601 with milliseconds,
//!   because the endpoint reads `to` as inclusive. Exact per window.
//! - **Record mode**: `GET /v1/usage/list?take&order=desc&cursor`, sending `botId` (one bot
//!   asked), `contactId` (one user asked) and `type=BASE` (see below) as filters, and always
//!   filtering again client-side, since the spec documents none of them. `createdAt` is epoch
//!   milliseconds; a record at `t` belongs to the window `[start, end)` holding `t`.
//!   Paging stops at an empty page, an absent/empty/repeated cursor, or once a record older
//!   than the oldest instant needed shows up.
//!
//! # Page size
//! Both lists ask for `take = page_size` (1000 by default). The contract gives `take` no
//! maximum, so the provider copes with each way a server may treat a large one:
//! - served in full: the fewest requests;
//! - quietly served in part (fewer items, with a cursor): a short page does not end the list,
//!   so nothing is lost. The price is one request that comes back empty where the last page
//!   carries a cursor;
//! - refused (400/422) while above 100: the request is sent again with `take=100`, and the
//!   source keeps 100 from then on (logged once per source as a warning). Only until the server
//!   has accepted the larger `take` once: after that a 400 (e.g. a stale cursor) is an error.
//!
//! A list that has not ended after 50 000 pages fails the request (a server sending a fresh
//! cursor forever).
//!
//! # Which mode answers
//! Range mode answers when the query keeps no `user`, `conversation` or `usage_type` dimension,
//! has no user filter, and names its bots: through an agent filter (or the fixed `agents`
//! list) that does not include [`usage_core::UNATTRIBUTED_AGENT`]. Everything else is answered
//! from records, in particular a query with no agent filter on a discovering source: records
//! without `botId` (counted under [`usage_core::UNATTRIBUTED_AGENT`], never dropped) and records
//! of bots no longer listed cannot be fetched per bot, so only the record list is complete. When
//! a cached record scan already covers a range-mode query, it answers instead, with no request.
//!
//! # Both modes give the same totals
//! `…/usage/fetch` counts `BASE` records only ("tokens (BASE type only)" in the spec). With the
//! default `record_types = "base"`, record mode therefore counts only records whose `type` is
//! exactly `BASE` (and asks the server for `type=BASE`), so for the same window and bots both
//! modes return the same numbers, whatever the grouping. Other record types seen in the windows
//! are reported in the batch `notes`, not counted. `record_types = "all"` counts every type;
//! range mode is then never used.
//!
//! # Units
//! ChatBotKit counts credit tokens with no input/output split: every count goes to
//! `other_tokens`, in the configured `unit` (`credits` by default, or `tokens`), never to the
//! input or output counters.
//!
//! # Record cache
//! Scanned records are kept per server-side filter together with the time span they cover
//! completely (see the `scan` module): a repeated query over a covered range costs no request,
//! an older range only costs the pages below what is cached, and the newest part is re-read
//! once it is `open_ttl` old (records younger than `settle` may still change). A scan is redone
//! from scratch after `closed_ttl`. Concurrent queries needing the same filter wait for one
//! scan and share it.
//!
//! # Errors and rate limits
//! One function (`client::parse_error`) maps status and body, in either error shape
//! (`{message, code}` or `{success:false, error:{code,message}}`): 401 → `Unauthenticated`,
//! 402/403 → `Forbidden`, 404 → `NotFound` (a bot unknown in range mode is a note instead),
//! 429 `TOO_MANY_REQUESTS` → `RateLimited` with `Retry-After` or `X-RateLimit-Reset`,
//! `LIMITS_REACHED` → `QuotaExceeded` (not retryable), 400/422 → `Config`, others → `Upstream`.
//! Every request first passes the source's [`usage_core::budget::Budget`]
//! (`rate_limit_per_minute`, none by default, and `max_concurrency`). When a response says
//! `X-RateLimit-Remaining: 0`, or a 429 gives a delay, the budget pauses until then: later
//! requests wait only while the pause ends before the request deadline, otherwise they fail fast
//! with `RateLimited`. The provider does not retry by itself.

mod client;
mod config;
mod error;
mod model;
mod provider;
mod scan;

pub use config::{Config, RecordTypes};
pub use provider::ChatbotkitProvider;

/// This provider's name: `provider = "chatbotkit"` in `[[sources]]`.
pub const KIND: usage_core::ProviderKind = usage_core::ProviderKind::new("chatbotkit");

/// This provider's entry in the gateway's registry.
pub const DESCRIPTOR: usage_core::plugin::ProviderDescriptor =
    usage_core::plugin::ProviderDescriptor {
        kind: KIND,
        description: "ChatBotKit: usage records or per-bot totals, in credits or tokens",
        billing: usage_core::plugin::Billing {
            provider_name: "ChatBotKit",
            service_name: "ChatBotKit",
        },
        defaults: config::SETTINGS,
        build: |ctx, table| usage_core::plugin::build_with(ctx, table, ChatbotkitProvider::new),
    };
