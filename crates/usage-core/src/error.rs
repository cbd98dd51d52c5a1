//! The one error type every provider reports in.

use std::time::Duration;

/// What went wrong talking to a vendor, in terms the gateway can act on.
///
/// Every variant names the source. Messages never contain credentials or raw vendor bodies
/// beyond the vendor's own short error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The vendor rejected our credentials (401).
    #[error("{source_name}: the vendor rejected the configured credentials: {message}")]
    Unauthenticated {
        /// The source.
        source_name: String,
        /// The vendor's message.
        message: String,
    },
    /// The credentials lack a privilege, licence or plan (403).
    #[error("{source_name}: the vendor refused access: {message}")]
    Forbidden {
        /// The source.
        source_name: String,
        /// The vendor's message.
        message: String,
    },
    /// The route or the resource does not exist (404).
    #[error("{source_name}: not found: {message}")]
    NotFound {
        /// The source.
        source_name: String,
        /// What was not found.
        message: String,
        /// The provider's own reading of the 404 (e.g. which vendor version has the route), in
        /// the provider's words only — never vendor text or credentials — so that
        /// [`ProviderError::public_detail`] can show it to API callers.
        hint: Option<String>,
    },
    /// The vendor throttled us (429 or a local budget); retry after the given delay if known.
    #[error("{source_name}: rate limited{}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The source.
        source_name: String,
        /// When a retry may succeed.
        retry_after: Option<Duration>,
    },
    /// A plan quota is exhausted (e.g. ChatBotKit `LIMITS_REACHED`); retrying does not help.
    #[error("{source_name}: vendor quota exhausted: {message}")]
    QuotaExceeded {
        /// The source.
        source_name: String,
        /// The vendor's message.
        message: String,
    },
    /// The vendor answered with another unexpected status.
    #[error("{source_name}: vendor answered HTTP {status}: {message}")]
    Upstream {
        /// The source.
        source_name: String,
        /// The HTTP status.
        status: u16,
        /// The vendor's message.
        message: String,
    },
    /// The request could not be sent or no answer came (connect error, reset).
    #[error("{source_name}: transport error: {message}")]
    Transport {
        /// The source.
        source_name: String,
        /// What failed.
        message: String,
    },
    /// The vendor did not answer in time.
    #[error("{source_name}: timed out after {}ms", elapsed.as_millis())]
    Timeout {
        /// The source.
        source_name: String,
        /// How long we waited.
        elapsed: Duration,
    },
    /// The vendor's body could not be read as the documented shape.
    #[error("{source_name}: could not decode the vendor's answer: {message}")]
    Decode {
        /// The source.
        source_name: String,
        /// What did not fit.
        message: String,
    },
    /// The query cannot be answered as asked (e.g. too many upstream calls).
    #[error("{source_name}: {message}")]
    InvalidQuery {
        /// The source.
        source_name: String,
        /// Which parameter and why.
        message: String,
    },
    /// The query needs more vendor requests than the source allows per query (e.g.
    /// DigitalOcean's `max_upstream_calls`); a coarser bucket, a shorter range or fewer agents
    /// fit. Other sources may still answer the same query.
    #[error("{source_name}: {message}")]
    SourceLimit {
        /// The source.
        source_name: String,
        /// The limit and what would fit, in the provider's terms.
        message: String,
        /// The numbers behind it, so that callers can say what fits in their own terms.
        calls: CallLimit,
    },
    /// The gateway stopped calling the source after repeated failures; it probes again later.
    #[error("{source_name}: circuit open after repeated failures; next attempt in {}s", retry_after.as_secs())]
    CircuitOpen {
        /// The source.
        source_name: String,
        /// When the next probe is allowed.
        retry_after: Duration,
    },
    /// The source is misconfigured, or the vendor rejected our request as malformed.
    #[error("{source_name}: configuration error: {message}")]
    Config {
        /// The source.
        source_name: String,
        /// What is wrong.
        message: String,
    },
}

/// Why a query exceeds a source's per-query limit of vendor requests: `agents × windows`
/// requests were needed (or, with `agents_by_windows` false, requests planned otherwise, e.g.
/// OpenAI's request ranges × report endpoints, which the error's message words), `max` are
/// allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimit {
    /// Whether the requests are one per agent and window (DigitalOcean), so that callers may
    /// advise fewer agents, coarser buckets or a shorter range in their own terms; otherwise the
    /// provider's message says what fits.
    pub agents_by_windows: bool,
    /// Vendor requests the query needs.
    pub needed: u64,
    /// Vendor requests allowed per query.
    pub max: u64,
    /// The configuration key that sets `max` (e.g. `max_upstream_calls`).
    pub setting: &'static str,
    /// Agents the query covers (one request per agent and window).
    pub agents: u64,
    /// Windows to fetch per agent.
    pub windows: u64,
}

impl ProviderError {
    /// Reports whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::Upstream { status, .. } => *status >= 500 || *status == 408,
            Self::Unauthenticated { .. }
            | Self::Forbidden { .. }
            | Self::NotFound { .. }
            | Self::QuotaExceeded { .. }
            | Self::Decode { .. }
            | Self::InvalidQuery { .. }
            | Self::SourceLimit { .. }
            | Self::CircuitOpen { .. }
            | Self::Config { .. } => false,
        }
    }

    /// Reports whether the failure says the vendor is unhealthy (counts towards opening a
    /// circuit): transport failures, timeouts and 5xx, but not throttling or caller mistakes.
    pub fn is_vendor_fault(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::Upstream { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Describes the failure without any vendor-supplied text (vendor messages and body
    /// excerpts stay in the logs), so that it can be shown to API callers.
    pub fn public_detail(&self) -> String {
        match self {
            Self::Unauthenticated { source_name, .. } => {
                format!("{source_name}: the vendor rejected the configured credentials")
            }
            Self::Forbidden { source_name, .. } => format!(
                "{source_name}: the vendor refused access (missing privilege, licence or plan)"
            ),
            Self::NotFound {
                source_name,
                hint: Some(hint),
                ..
            } => format!("{source_name}: {hint}"),
            Self::NotFound { source_name, .. } => {
                format!(
                    "{source_name}: the vendor answered not found (check base_url and the vendor's version)"
                )
            }
            Self::QuotaExceeded { source_name, .. } => {
                format!("{source_name}: the vendor's plan quota is exhausted")
            }
            Self::Upstream {
                source_name,
                status,
                ..
            } => format!("{source_name}: the vendor answered HTTP {status}"),
            Self::Transport { source_name, .. } => {
                format!("{source_name}: the vendor could not be reached")
            }
            Self::Config { source_name, .. } => format!(
                "{source_name}: the source is misconfigured or the vendor rejected the request as malformed; the gateway log has the vendor's message"
            ),
            // These carry only the gateway's own words.
            Self::RateLimited { .. }
            | Self::Timeout { .. }
            | Self::Decode { .. }
            | Self::InvalidQuery { .. }
            | Self::SourceLimit { .. }
            | Self::CircuitOpen { .. } => self.to_string(),
        }
    }

    /// Returns the delay the vendor asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            Self::CircuitOpen { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Returns a short, stable machine name of the variant (`rate_limited`, `timeout`, ...),
    /// used as the problem type suffix and as a metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthenticated { .. } => "upstream_unauthenticated",
            Self::Forbidden { .. } => "upstream_forbidden",
            Self::NotFound { .. } => "upstream_not_found",
            Self::RateLimited { .. } => "rate_limited",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::Upstream { .. } => "upstream_error",
            Self::Transport { .. } => "upstream_unreachable",
            Self::Timeout { .. } => "timeout",
            Self::Decode { .. } => "upstream_decode",
            Self::InvalidQuery { .. } => "invalid_query",
            Self::SourceLimit { .. } => "source_limit",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Config { .. } => "source_config",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_detail_shows_a_provider_hint_but_never_the_vendor_message() {
        let e = |hint: Option<&str>| ProviderError::NotFound {
            source_name: "kb".into(),
            message: "vendor said <secret-ish body>".into(),
            hint: hint.map(str::to_owned),
        };
        let with = e(Some(
            "Agent Builder consumption API not available (Kibana < 9.4?)",
        ));
        assert_eq!(
            with.public_detail(),
            "kb: Agent Builder consumption API not available (Kibana < 9.4?)"
        );
        let without = e(None).public_detail();
        assert!(without.contains("not found"), "{without}");
        for d in [with.public_detail(), without] {
            assert!(!d.contains("vendor said"), "{d}");
        }
    }

    #[test]
    fn transient_split() {
        let s = || "s".to_string();
        assert!(
            ProviderError::RateLimited {
                source_name: s(),
                retry_after: None
            }
            .is_transient()
        );
        assert!(
            ProviderError::Upstream {
                source_name: s(),
                status: 503,
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            !ProviderError::Upstream {
                source_name: s(),
                status: 400,
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            !ProviderError::QuotaExceeded {
                source_name: s(),
                message: String::new()
            }
            .is_transient()
        );
        assert!(
            !ProviderError::Decode {
                source_name: s(),
                message: String::new()
            }
            .is_transient()
        );
    }
}
