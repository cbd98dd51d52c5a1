//! Shared application state: configuration, verifier, sources and caches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderValue;
use bytes::Bytes;
use moka::future::Cache;
use usage_core::Agent;

use crate::auth::{Caller, JwtVerifier};
use crate::config::{AccessEntry, CacheConfig, Config, ConfigError, ServerConfig};
use crate::fetch::{Source, SourceSpec, UsageCache};
use crate::query::UsageRequest;
use crate::registry::Registry;

/// A rendered `/v1/usage` answer, kept so that a repeated query is neither re-aggregated nor
/// re-serialized.
#[derive(Debug)]
pub struct Rendered {
    /// `application/json` or `text/csv`.
    pub content_type: &'static str,
    /// `Content-Disposition` (CSV answers: an attachment named after the range).
    pub content_disposition: Option<HeaderValue>,
    /// `x-usage-unpriced` (FOCUS answers): the quantities per unit that no cost covers, which
    /// FOCUS lines (charges) cannot show.
    pub unpriced: Option<HeaderValue>,
    /// The body.
    pub body: Bytes,
    /// The `ETag` header (a strong entity tag of the answer's data, not of its fetch
    /// metadata, so replicas agree), made once.
    pub etag_header: HeaderValue,
    /// The `Cache-Control` header (`private, max-age=N`), made once.
    pub cache_control: HeaderValue,
    /// Whether every source answered.
    pub complete: bool,
    /// When the response cache stops serving it (made + `cache.open_ttl`).
    pub expires_at: Instant,
    /// Set when a refresh (`Cache-Control: no-cache`) replaced it in the response cache: hits
    /// remembered from it are no longer answered from it.
    pub superseded: AtomicBool,
}

/// The byte budget of remembered query parses.
const PARSED_CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// Numbers the states made in this process.
static STATE_IDS: AtomicU64 = AtomicU64::new(0);

/// Everything handlers share.
#[derive(Debug)]
pub struct AppState {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[cache]`.
    pub cache_config: CacheConfig,
    /// The JWT verifier.
    pub verifier: JwtVerifier,
    /// `[[access]]`.
    pub config_access: Vec<AccessEntry>,
    /// Every source name, sorted.
    pub source_names: Vec<String>,
    /// Sources by name.
    pub sources: BTreeMap<String, Arc<Source>>,
    /// Upstream answers per window.
    pub cache: UsageCache,
    /// Rendered answers per caller access and query.
    pub responses: Cache<u128, Arc<Rendered>>,
    /// Agent lists per source.
    pub agents: Cache<String, Arc<Vec<Agent>>>,
    /// Callers by the exact token that authenticated them (see [`Caller::usable_at`]).
    pub callers: Cache<String, Arc<Caller>>,
    /// Parsed `/v1/usage` queries by their raw query string, for queries whose parse does not
    /// depend on the time (those that name their `end`).
    pub parsed: Cache<String, Arc<UsageRequest>>,
    /// Tells this state's remembered cache hits from another's in the same process (tests
    /// run several gateways; see `routes::usage::fast_hit`).
    pub id: u64,
    /// The providers this gateway knows.
    pub registry: Registry,
    /// The OpenAPI document `/openapi.json` serves (made once, for this registry).
    pub openapi: bytes::Bytes,
    /// The usage store, when `[store]` is configured and [`AppState::open_store`] opened it.
    pub store: Option<Arc<crate::stored::StoreHandle>>,
    /// `[store]`, opened by [`AppState::open_store`].
    pub store_config: Option<crate::config::StoreConfig>,
    /// The price table (`[[prices]]`), checked.
    pub prices: Arc<usage_core::prices::PriceTable>,
    /// The budgets (`[[budgets]]`), checked.
    pub budgets: Arc<Vec<crate::budgets::Budget>>,
    /// When the budget gauges were last brought up to date.
    pub budget_refresh: Arc<crate::budgets::Refresh>,
}

impl AppState {
    /// Builds the state from a validated config and the providers built from its sources.
    pub fn new(
        config: Config,
        providers: impl IntoIterator<Item = impl Into<SourceSpec>>,
    ) -> Result<Self, ConfigError> {
        Self::with_registry(config, providers, Registry::builtin())
    }

    /// Builds the state of a gateway whose providers are `registry`'s (the sources built with
    /// it; see [`Registry::build_providers`]).
    pub fn with_registry(
        config: Config,
        providers: impl IntoIterator<Item = impl Into<SourceSpec>>,
        registry: Registry,
    ) -> Result<Self, ConfigError> {
        let verifier = JwtVerifier::new(&config.auth)?;
        let mut sources = BTreeMap::new();
        for p in providers {
            let s = Arc::new(Source::new(p.into()));
            let name = s.info.name.clone();
            if sources.insert(name.clone(), s).is_some() {
                return Err(ConfigError::one(
                    "sources",
                    format!("two sources are named `{name}`"),
                ));
            }
        }
        crate::config::check_access(&config.access, &sources.keys().cloned().collect())?;
        let mut unknown = Vec::new();
        for (i, p) in config.prices.iter().enumerate() {
            if let Some(name) = &p.provider
                && registry.get(name).is_none()
            {
                unknown.push((
                    format!("prices[{i}].provider"),
                    format!(
                        "unknown provider `{name}`; expected one of {}",
                        registry.names()
                    ),
                ));
            }
            if let Some(name) = &p.source
                && !sources.contains_key(name)
            {
                unknown.push((
                    format!("prices[{i}].source"),
                    format!("`{name}` is not a configured source"),
                ));
            }
        }
        let budgets = crate::budgets::Budget::check_all(&config.budgets)
            .map_err(|errors| ConfigError { errors })?;
        for (i, b) in budgets.iter().enumerate() {
            let named = [
                ("source", b.source.as_deref()),
                ("agent", b.agent.as_ref().map(|(s, _)| s.as_str())),
            ];
            for (field, source) in named {
                if let Some(name) = source
                    && !sources.contains_key(name)
                {
                    unknown.push((
                        format!("budgets[{i}].{field}"),
                        format!("`{name}` is not a configured source"),
                    ));
                }
            }
        }
        if !unknown.is_empty() {
            return Err(ConfigError { errors: unknown });
        }
        let prices = Arc::new(
            usage_core::prices::PriceTable::new(&config.prices)
                .map_err(|errors| ConfigError { errors })?,
        );
        crate::obs::register_series(sources.keys(), config.auth.jwks_url.is_some());
        // Three quarters of the byte budget hold upstream answers, one quarter rendered bodies.
        let budget = config.cache.max_bytes;
        let cache = UsageCache::new(&config.cache, budget / 4 * 3);
        let responses = Cache::builder()
            .name("usage-responses")
            .max_capacity(budget / 4)
            .weigher(|_k: &u128, v: &Arc<Rendered>| {
                u32::try_from(v.body.len() + v.etag_header.len() + 64).unwrap_or(u32::MAX)
            })
            .time_to_live(config.cache.open_ttl)
            .build();
        let agents = Cache::builder()
            .name("agents")
            .max_capacity(10_000)
            .time_to_live(config.cache.open_ttl.max(Duration::from_secs(60)))
            .build();
        let callers = Cache::builder()
            .name("verified-tokens")
            .max_capacity(crate::auth::VERIFIED_CACHE_BYTES)
            .weigher(|k: &String, v: &Arc<Caller>| {
                u32::try_from(k.len() + v.weight()).unwrap_or(u32::MAX)
            })
            .time_to_live(crate::auth::VERIFIED_TTL)
            .build();
        let parsed = Cache::builder()
            .name("parsed-queries")
            .max_capacity(PARSED_CACHE_BYTES)
            .weigher(|k: &String, v: &Arc<UsageRequest>| {
                u32::try_from(k.len() * 2 + 256 + v.windows.len() * 16).unwrap_or(u32::MAX)
            })
            .time_to_live(Duration::from_secs(600))
            .build();
        Ok(Self {
            prices,
            budgets: Arc::new(budgets),
            budget_refresh: Arc::default(),
            store: None,
            store_config: config.store,
            openapi: crate::openapi::document_json_for(&registry).into(),
            registry,
            id: STATE_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            callers,
            parsed,
            source_names: sources.keys().cloned().collect(),
            server: config.server,
            cache_config: config.cache,
            verifier,
            config_access: config.access,
            sources,
            cache,
            responses,
            agents,
        })
    }

    /// Opens `[store]` when configured and starts its syncers (inside the runtime that
    /// serves): a store that cannot be reached yet is opened in the background; a schema this
    /// build does not know or a wrong location is an error.
    pub async fn open_store(&mut self) -> Result<(), usage_core::StoreError> {
        let Some(config) = self.store_config.clone() else {
            return Ok(());
        };
        let handle = crate::stored::StoreHandle::start(config).await?;
        self.attach_store(handle);
        Ok(())
    }

    /// Uses `handle` as the usage store and starts its syncers (when `[store] sync` is on).
    pub fn attach_store(&mut self, handle: Arc<crate::stored::StoreHandle>) {
        crate::sync::spawn_all(
            &handle,
            self.sources.values().cloned(),
            self.cache_config.settle,
        );
        self.store = Some(handle);
    }
}
