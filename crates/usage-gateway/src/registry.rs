//! The provider registry: the providers this gateway can build sources of, one line per provider
//! crate. Configuration (`[[sources]] provider = ...`), the `provider` query filter, the OpenAPI
//! document's provider values, `check-config` messages and `GET /v1/sources` all take the
//! provider list from here.

use usage_core::ProviderKind;
use usage_core::plugin::{BuildContext, ProviderDescriptor};

use crate::config::{Config, ConfigError, SourceCommon, split_source};
use crate::fetch::SourceSpec;
use crate::resilience::ResilienceConfig;

/// The providers a gateway knows, in registration order.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    providers: Vec<ProviderDescriptor>,
}

impl Registry {
    /// The providers built into this binary. Adding a vendor is its crate plus one line here.
    pub fn builtin() -> Self {
        Self::default()
            .with(usage_provider_digitalocean::DESCRIPTOR)
            .with(usage_provider_kibana::DESCRIPTOR)
            .with(usage_provider_chatbotkit::DESCRIPTOR)
            .with(usage_provider_openai::DESCRIPTOR)
            .with(usage_provider_anthropic::DESCRIPTOR)
    }

    /// Adds a provider (e.g. a test's own). Two providers of one name are a programming error.
    #[must_use]
    pub fn with(mut self, provider: ProviderDescriptor) -> Self {
        assert!(
            self.get(provider.kind.as_str()).is_none(),
            "provider `{}` registered twice",
            provider.kind
        );
        self.providers.push(provider);
        self
    }

    /// The provider of this name.
    pub fn get(&self, name: &str) -> Option<&ProviderDescriptor> {
        self.providers.iter().find(|p| p.kind.as_str() == name)
    }

    /// Every registered provider, in registration order.
    pub fn providers(&self) -> &[ProviderDescriptor] {
        &self.providers
    }

    /// Every registered provider's name, in registration order.
    pub fn kinds(&self) -> Vec<ProviderKind> {
        self.providers.iter().map(|p| p.kind).collect()
    }

    /// The names as a message lists them: `digitalocean, kibana, chatbotkit`.
    pub fn names(&self) -> String {
        self.providers
            .iter()
            .map(|p| p.kind.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Builds every configured source's provider and resilience settings, reporting each
    /// mistake with its key path.
    pub fn build_providers(&self, config: &Config) -> Result<Vec<SourceSpec>, ConfigError> {
        let mut out: Vec<SourceSpec> = Vec::new();
        let mut errors = Vec::new();
        for (i, table) in config.sources.iter().enumerate() {
            match self.build_one(i, table) {
                Ok(p) => out.push(p),
                Err(e) => errors.extend(e.errors),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(ConfigError { errors })
        }
    }

    fn build_one(&self, index: usize, table: &toml::Table) -> Result<SourceSpec, ConfigError> {
        let (common, rest) = split_source(index, table)?;
        let prefix = format!("sources[{index}]");
        let Some(descriptor) = self.get(&common.provider) else {
            return Err(ConfigError::one(
                format!("{prefix}.provider"),
                format!(
                    "unknown provider `{}`; expected one of {}",
                    common.provider,
                    self.names()
                ),
            ));
        };
        let settings = common.settings(index, &descriptor.defaults)?;
        let rate_limit_per_minute = settings.rate_limit();
        let http = http_client(&common)?;
        let ctx = BuildContext {
            name: common.name.clone(),
            http,
            settings,
        };
        let provider = (descriptor.build)(ctx, rest).map_err(|problems| ConfigError {
            errors: problems
                .into_iter()
                .map(|p| {
                    let path = if p.key.is_empty() {
                        prefix.clone()
                    } else {
                        format!("{prefix}.{}", p.key)
                    };
                    (path, p.message)
                })
                .collect(),
        })?;
        Ok(SourceSpec {
            provider,
            resilience: ResilienceConfig {
                max_attempts: common.max_attempts,
                min_delay: common.retry_min_delay,
                max_delay: common.retry_max_delay,
                breaker_failures: common.breaker_failures,
                breaker_cooldown: common.breaker_cooldown,
            },
            rate_limit_per_minute,
        })
    }
}

/// Builds the HTTP client a source uses: its own timeouts and no redirects. Like the JWKS
/// client it honours the standard egress proxy variables (`HTTPS_PROXY`, `HTTP_PROXY`,
/// `ALL_PROXY`, `NO_PROXY`), as vendor APIs are often reached through one; the README says so.
pub fn http_client(common: &SourceCommon) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .timeout(common.timeout)
        .connect_timeout(common.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("usage-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            ConfigError::one(
                format!("source `{}`", common.name),
                format!("cannot build HTTP client: {e}"),
            )
        })
}

/// Builds every configured source with the built-in providers ([`Registry::builtin`]).
pub fn build_providers(config: &Config) -> Result<Vec<SourceSpec>, ConfigError> {
    Registry::builtin().build_providers(config)
}
