//! Builds providers from `[[sources]]` tables: one line per provider kind.

use std::sync::Arc;

use usage_core::DynUsageProvider;

use crate::config::{Config, ConfigError, SourceCommon, from_toml, split_source};
use crate::fetch::SourceSpec;
use crate::resilience::ResilienceConfig;

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

/// Builds every configured source's provider and resilience settings, reporting each mistake
/// with its key path.
pub fn build_providers(config: &Config) -> Result<Vec<SourceSpec>, ConfigError> {
    let mut out: Vec<SourceSpec> = Vec::new();
    let mut errors = Vec::new();
    for (i, table) in config.sources.iter().enumerate() {
        match build_one(i, table) {
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

fn build_one(index: usize, table: &toml::Table) -> Result<SourceSpec, ConfigError> {
    let (common, rest) = split_source(index, table)?;
    let http = http_client(&common)?;
    let rest = toml::Value::Table(rest);
    let prefix = format!("sources[{index}]");
    let at = |e: usage_core::ProviderError| ConfigError::one(prefix.clone(), e.to_string());
    // One line per provider kind: adding a vendor is one crate plus one arm here.
    let provider: DynUsageProvider = match common.provider.as_str() {
        "digitalocean" => {
            let cfg = from_toml(&prefix, rest)?;
            Arc::new(
                usage_provider_digitalocean::DigitaloceanProvider::new(&common.name, cfg, http)
                    .map_err(at)?,
            )
        }
        "kibana" => {
            let cfg = from_toml(&prefix, rest)?;
            Arc::new(
                usage_provider_kibana::KibanaProvider::new(&common.name, cfg, http).map_err(at)?,
            )
        }
        "chatbotkit" => {
            let cfg = from_toml(&prefix, rest)?;
            Arc::new(
                usage_provider_chatbotkit::ChatbotkitProvider::new(&common.name, cfg, http)
                    .map_err(at)?,
            )
        }
        other => {
            return Err(ConfigError::one(
                format!("{prefix}.provider"),
                format!(
                    "unknown provider `{other}`; expected one of digitalocean, kibana, chatbotkit"
                ),
            ));
        }
    };
    Ok(SourceSpec {
        provider,
        resilience: ResilienceConfig {
            max_attempts: common.max_attempts,
            min_delay: common.retry_min_delay,
            max_delay: common.retry_max_delay,
            breaker_failures: common.breaker_failures,
            breaker_cooldown: common.breaker_cooldown,
        },
    })
}
