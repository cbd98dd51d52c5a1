//! Anthropic HTTP: request building (`x-api-key`, `anthropic-version`, bracket arrays) on
//! usage-core's shared [`Transport`] (budget, counting, body cap, rate-limit headers).

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;
use usage_core::ProviderError;
use usage_core::budget::Budget;
use usage_core::transport::{Admission, ProviderVendor, Transport, budget_refusal, truncate};

use crate::error::parse_error;
use crate::model::WorkspaceList;

/// The API version every request sends (`anthropic-version`).
pub(crate) const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Workspaces per list page (the list's maximum is larger; 100 keeps pages small).
const WORKSPACES_PER_PAGE: &str = "100";

/// Talks to one Anthropic organization through the source's budget.
pub(crate) struct AnthropicClient {
    transport: Transport,
    base_url: Url,
    admin_key: SecretString,
}

impl fmt::Debug for AnthropicClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicClient")
            .field("base_url", &self.base_url.as_str())
            .field("admin_key", &"[REDACTED]")
            .field("transport", &self.transport)
            .finish()
    }
}

/// The pause after a 429 that gives no delay: Anthropic's guidance for these endpoints is one
/// poll a minute.
const DEFAULT_429_PAUSE: Duration = Duration::from_secs(60);

/// Anthropic's part of the transport: its error table, and the shared transport mapping.
fn vendor(source: &str) -> ProviderVendor<'_> {
    ProviderVendor {
        source,
        refused: parse_error,
        default_pause: DEFAULT_429_PAUSE,
    }
}

impl AnthropicClient {
    pub(crate) fn new(
        source: &str,
        http: reqwest::Client,
        base_url: Url,
        admin_key: SecretString,
        per_minute: NonZeroU32,
        max_concurrency: usize,
        max_body: usize,
    ) -> Self {
        Self {
            transport: Transport::new(
                source,
                http,
                Budget::new(Some(per_minute), max_concurrency),
                max_body,
            ),
            base_url,
            admin_key,
        }
    }

    fn source(&self) -> &str {
        self.transport.source()
    }

    /// `base_url` with `segments` appended.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Takes `n` requests from the source's per-minute budget, all or nothing (a planned
    /// fan-out; each request then takes only a concurrency slot).
    pub(crate) async fn reserve(&self, n: u32) -> Result<(), ProviderError> {
        self.transport
            .budget()
            .reserve(n)
            .await
            .map_err(|e| budget_refusal(self.source(), &e))
    }

    /// One page of the report at `/v1/organizations/<report…>`: `params` (array names with
    /// `[]`) plus `page`.
    pub(crate) async fn report_page<T: DeserializeOwned>(
        &self,
        report: &[&str],
        params: &[(&str, String)],
        page: Option<&str>,
        admission: Admission,
        sent: &AtomicU64,
    ) -> Result<T, ProviderError> {
        let mut segments = vec!["v1", "organizations"];
        segments.extend_from_slice(report);
        let mut url = self.endpoint(&segments);
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            if let Some(page) = page {
                q.append_pair("page", page);
            }
        }
        self.get_json(url, admission, Some(sent)).await
    }

    /// One page of the workspaces list, archived ones included, after `after_id`.
    pub(crate) async fn workspaces_page(
        &self,
        after_id: Option<&str>,
    ) -> Result<WorkspaceList, ProviderError> {
        let mut url = self.endpoint(&["v1", "organizations", "workspaces"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", WORKSPACES_PER_PAGE)
                .append_pair("include_archived", "true");
            if let Some(id) = after_id {
                q.append_pair("after_id", id);
            }
        }
        self.get_json(url, Admission::Admit, None).await
    }

    /// The `x-api-key` value, marked sensitive (kept out of `Debug` output and of HTTP/2
    /// header compression tables).
    fn api_key(&self) -> Result<HeaderValue, ProviderError> {
        let mut key = HeaderValue::from_str(self.admin_key.expose_secret()).map_err(|_| {
            ProviderError::Config {
                source_name: self.source().to_owned(),
                message: "admin_key is not a valid header value".to_owned(),
            }
        })?;
        key.set_sensitive(true);
        Ok(key)
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
        admission: Admission,
        sent: Option<&AtomicU64>,
    ) -> Result<T, ProviderError> {
        let request = self
            .transport
            .http()
            .get(url)
            .header("x-api-key", self.api_key()?)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .header(ACCEPT, "application/json");
        let answer = self
            .transport
            .send(&vendor(self.source()), admission, request, sent)
            .await?;
        usage_core::http::json(&answer.body).map_err(|e| ProviderError::Decode {
            source_name: self.source().to_owned(),
            message: truncate(&format!("unexpected {} body: {e}", answer.status)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(key: &str) -> AnthropicClient {
        AnthropicClient::new(
            "an",
            reqwest::Client::new(),
            Url::parse("http://127.0.0.1:9").unwrap(),
            SecretString::from(key),
            NonZeroU32::MIN,
            1,
            1024,
        )
    }

    #[test]
    fn the_api_key_header_is_sensitive() {
        let key = client("sk-ant-admin01-secret").api_key().unwrap();
        assert!(key.is_sensitive());
        assert!(!format!("{key:?}").contains("secret"));
        let e = client("bad\nkey").api_key().unwrap_err();
        assert_eq!(e.kind(), "source_config");
        assert!(!e.to_string().contains("bad"), "{e}");
    }
}
