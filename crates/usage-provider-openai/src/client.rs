//! OpenAI HTTP: request building on usage-core's shared [`Transport`] (budget, counting, body
//! cap, rate-limit headers, transport errors) with [`crate::error`]'s status table.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use reqwest::header::ACCEPT;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;
use usage_core::ProviderError;
use usage_core::budget::Budget;
use usage_core::transport::{Admission, ProviderVendor, Transport, budget_refusal, truncate};

/// Talks to one OpenAI organization with an admin key.
pub(crate) struct OaClient {
    transport: Transport,
    base_url: Url,
    admin_key: SecretString,
    organization: Option<String>,
}

impl fmt::Debug for OaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OaClient")
            .field("base_url", &self.base_url.as_str())
            .field("admin_key", &"[REDACTED]")
            .field("organization", &self.organization)
            .field("transport", &self.transport)
            .finish()
    }
}

/// The pause after a 429 that gives no delay: OpenAI's rate limits are per minute and it
/// sends no `Retry-After` with some 429s.
const DEFAULT_429_PAUSE: Duration = Duration::from_secs(10);

/// OpenAI's part of the transport: its status table, and the shared transport mapping.
fn vendor(source: &str) -> ProviderVendor<'_> {
    ProviderVendor {
        source,
        refused: crate::error::refused,
        default_pause: DEFAULT_429_PAUSE,
    }
}

impl OaClient {
    pub(crate) fn new(
        source: &str,
        http: reqwest::Client,
        config: &crate::Config,
        per_minute: NonZeroU32,
    ) -> Self {
        Self {
            transport: Transport::new(
                source,
                http,
                Budget::new(Some(per_minute), config.max_concurrency),
                config.max_body_bytes,
            ),
            base_url: config.base_url.clone(),
            admin_key: config.admin_key.clone(),
            organization: config.organization.clone(),
        }
    }

    fn source(&self) -> &str {
        self.transport.source()
    }

    /// `base_url` + `/v1/organization/` + `segments`, with `query` appended (array values as
    /// repeated `name[]=`, as the official SDK sends them).
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["v1", "organization"])
                .extend(segments);
        }
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        url
    }

    /// Takes `n` requests from the source's per-minute budget, all or nothing (each request
    /// then sent with [`Admission::Reserved`] takes only a concurrency slot).
    pub(crate) async fn reserve(&self, n: u32) -> Result<(), ProviderError> {
        self.transport
            .budget()
            .reserve(n)
            .await
            .map_err(|e| budget_refusal(self.source(), &e))
    }

    /// Sends a GET and decodes the answer; `sent` counts it once it is sent.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
        admission: Admission,
        sent: &AtomicU64,
    ) -> Result<T, ProviderError> {
        let mut request = self
            .transport
            .http()
            .get(url)
            .bearer_auth(self.admin_key.expose_secret())
            .header(ACCEPT, "application/json");
        if let Some(org) = &self.organization {
            request = request.header("OpenAI-Organization", org);
        }
        let answer = self
            .transport
            .send(&vendor(self.source()), admission, request, Some(sent))
            .await?;
        usage_core::http::json(&answer.body).map_err(|e| ProviderError::Decode {
            source_name: self.source().to_owned(),
            message: truncate(&format!("unexpected {} body: {e}", answer.status)),
        })
    }
}
