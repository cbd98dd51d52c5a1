//! DigitalOcean HTTP: request building and the one status→error table, on usage-core's shared
//! [`Transport`] (budget, counting, body cap, rate-limit headers, transport errors).

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;
use usage_core::budget::{Budget, BudgetError};
use usage_core::transport::{Admission, Refusal, Transport, TransportError, Vendor, truncate};

use crate::error::DoError;
use crate::model::{ErrorBody, GetAgentUsageOutput, ListAgentsOutput};

/// DigitalOcean's `per_page` maximum for collections.
const AGENTS_PER_PAGE: &str = "200";

/// Talks to one DigitalOcean account: every request passes the source's [`Budget`] (per-minute
/// rate, concurrency cap, and the pause a 429 or a spent `ratelimit-remaining` asks for).
pub(crate) struct DoClient {
    transport: Transport,
    base_url: Url,
    token: SecretString,
}

impl fmt::Debug for DoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoClient")
            .field("base_url", &self.base_url.as_str())
            .field("token", &"[REDACTED]")
            .field("transport", &self.transport)
            .finish()
    }
}

/// DigitalOcean's part of the transport: its error table.
struct DigitalOcean;

impl Vendor for DigitalOcean {
    type Error = DoError;

    fn refused(&self, answer: &Refusal<'_>) -> DoError {
        parse_error(answer.status, answer.body, answer.retry_after)
    }

    fn failed(&self, error: TransportError) -> DoError {
        match error {
            TransportError::Budget(e) => budget_error(&e),
            TransportError::Timeout { elapsed } => DoError::Timeout { elapsed },
            TransportError::Transport { message } => DoError::Transport { message },
            e @ TransportError::TooLarge { .. } => DoError::Decode {
                message: e.message(),
            },
        }
    }

    fn pause(&self, error: &DoError) -> Option<Duration> {
        match error {
            DoError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

impl DoClient {
    /// Creates a client; `base_url` must be able to be a base (checked by config validation).
    pub(crate) fn new(
        source: &str,
        http: reqwest::Client,
        base_url: Url,
        token: SecretString,
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
            token,
        }
    }

    /// Returns `base_url` with the given path segments appended, each percent-encoded (an agent
    /// uuid holding `/` or `?` stays one segment).
    pub(crate) fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// The URL of the first agents page.
    pub(crate) fn first_agents_page(&self, only_deployed: bool) -> Url {
        let mut url = self.endpoint(&["v2", "gen-ai", "agents"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("per_page", AGENTS_PER_PAGE);
            if only_deployed {
                q.append_pair("only_deployed", "true");
            }
        }
        url
    }

    /// Resolves a `links.pages.next` value and refuses one that leaves the configured origin,
    /// so the token is never sent to another host.
    pub(crate) fn next_page(&self, current: &Url, next: &str) -> Result<Url, DoError> {
        let url = current.join(next).map_err(|e| DoError::Decode {
            message: format!("links.pages.next is not a URL: {e}"),
        })?;
        if url.origin() != self.base_url.origin() {
            return Err(DoError::Decode {
                message: format!(
                    "links.pages.next points to {}, outside the configured base_url; not following it",
                    url.origin().ascii_serialization()
                ),
            });
        }
        Ok(url)
    }

    /// Fetches one page of `GET /v2/gen-ai/agents`.
    pub(crate) async fn list_agents(&self, url: Url) -> Result<ListAgentsOutput, DoError> {
        self.get_json(url).await
    }

    /// Fetches `GET /v2/gen-ai/agents/{uuid}/usage?start&stop` for an inclusive second range.
    pub(crate) async fn agent_usage(
        &self,
        uuid: &str,
        start: DateTime<Utc>,
        stop: DateTime<Utc>,
    ) -> Result<GetAgentUsageOutput, DoError> {
        let mut url = self.endpoint(&["v2", "gen-ai", "agents", uuid, "usage"]);
        url.query_pairs_mut()
            .append_pair("start", &rfc3339_seconds(start))
            .append_pair("stop", &rfc3339_seconds(stop));
        self.get_json(url).await
    }

    /// Takes `n` calls from the source's per-minute budget, all or nothing, waiting only while
    /// the wait ends before the request deadline; otherwise answers `RateLimited` with the wait
    /// the budget needs. Nothing is taken on failure. Each request then takes a concurrency slot.
    pub(crate) async fn admit(&self, n: u32) -> Result<(), DoError> {
        self.transport
            .budget()
            .reserve(n)
            .await
            .map_err(|e| budget_error(&e))
    }

    /// Sends a GET whose rate budget [`admit`](Self::admit) reserved, and decodes the answer.
    async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, DoError> {
        let request = self
            .transport
            .http()
            .get(url)
            .bearer_auth(self.token.expose_secret())
            .header(ACCEPT, "application/json");
        let answer = self
            .transport
            .send(&DigitalOcean, Admission::Reserved, request, None)
            .await?;
        usage_core::http::json(&answer.body).map_err(|e| DoError::Decode {
            message: truncate(&format!("unexpected {} body: {e}", answer.status)),
        })
    }
}

/// Maps a refusal of the local budget.
fn budget_error(e: &BudgetError) -> DoError {
    match *e {
        BudgetError::ExceedsBudget { .. } => DoError::InvalidQuery {
            message: e.to_string(),
        },
        BudgetError::RateLimited { retry_after } => DoError::RateLimited {
            retry_after: Some(retry_after),
        },
    }
}

/// Formats an instant as DigitalOcean's documented `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339_seconds(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Maps a non-2xx DigitalOcean answer to an error: the one place statuses are decided.
/// `retry_after` is the delay the answer's rate-limit headers give (a 429's).
///
/// The body is DigitalOcean's `{id, message, request_id}`, or anything else (a proxy page), in
/// which case a short prefix of it stands in for the message, as godo's `CheckResponse` does.
pub(crate) fn parse_error(
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
) -> DoError {
    let vendor: Option<ErrorBody> = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .filter(|b| b.id.is_some() || b.message.is_some());
    let message = vendor
        .as_ref()
        .map_or_else(|| raw_body_message(body), vendor_message);
    match status.as_u16() {
        400 | 422 => DoError::BadRequest {
            status: status.as_u16(),
            message,
        },
        401 => DoError::Unauthenticated { message },
        403 => DoError::Forbidden { message },
        404 => DoError::NotFound {
            vendor: vendor.is_some_and(|b| b.id.is_some()),
            message,
        },
        429 => DoError::RateLimited { retry_after },
        s if (300..400).contains(&s) => DoError::Upstream {
            status: s,
            message: "DigitalOcean answered with a redirect, which is not followed; check base_url"
                .to_owned(),
        },
        s => DoError::Upstream { status: s, message },
    }
}

fn vendor_message(b: &ErrorBody) -> String {
    let mut m = b
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .or(b.id.as_deref())
        .unwrap_or("no message")
        .to_owned();
    if let Some(id) = b.request_id.as_deref().filter(|r| !r.is_empty()) {
        m = format!("{} (request_id {})", truncate(&m), truncate(id));
    }
    truncate(&m)
}

fn raw_body_message(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => {
            let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if collapsed.is_empty() {
                "empty body".to_owned()
            } else {
                truncate(&collapsed)
            }
        }
        Err(_) => format!("non-text body ({} bytes)", body.len()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn err(status: u16, body: &str) -> DoError {
        parse_error(StatusCode::from_u16(status).unwrap(), body.as_bytes(), None)
    }

    #[test]
    fn status_table() {
        let body = |id: &str, msg: &str| format!(r#"{{"id":"{id}","message":"{msg}"}}"#);
        assert_eq!(
            err(401, &body("unauthorized", "Unable to authenticate you.")),
            DoError::Unauthenticated {
                message: "Unable to authenticate you.".into()
            }
        );
        assert_eq!(
            err(403, &body("forbidden", "You do not have access.")),
            DoError::Forbidden {
                message: "You do not have access.".into()
            }
        );
        assert_eq!(
            err(
                404,
                &body(
                    "not_found",
                    "The resource you requested could not be found."
                )
            ),
            DoError::NotFound {
                message: "The resource you requested could not be found.".into(),
                vendor: true
            }
        );
        assert_eq!(
            err(429, &body("too_many_requests", "API rate limit exceeded.")),
            DoError::RateLimited { retry_after: None }
        );
        assert_eq!(
            err(500, &body("server_error", "Unexpected server-side error")),
            DoError::Upstream {
                status: 500,
                message: "Unexpected server-side error".into()
            }
        );
        assert_eq!(
            err(503, "<html><body>Service   Unavailable</body></html>"),
            DoError::Upstream {
                status: 503,
                message: "<html><body>Service Unavailable</body></html>".into()
            }
        );
        assert!(matches!(
            err(400, &body("bad_request", "bad start")),
            DoError::BadRequest { status: 400, .. }
        ));
        assert!(matches!(
            err(301, ""),
            DoError::Upstream { status: 301, .. }
        ));
        assert!(
            matches!(err(418, ""), DoError::Upstream { status: 418, message } if message == "empty body")
        );
    }

    #[test]
    fn a_404_without_do_body_is_not_an_unknown_agent() {
        assert_eq!(
            err(404, "404 page not found"),
            DoError::NotFound {
                message: "404 page not found".into(),
                vendor: false
            }
        );
        assert!(matches!(
            err(404, "{}"),
            DoError::NotFound { vendor: false, .. }
        ));
    }

    #[test]
    fn request_id_rides_along_and_long_messages_are_cut() {
        let e = err(
            500,
            r#"{"id":"server_error","message":"boom","request_id":"4d9d8375"}"#,
        );
        assert_eq!(
            e,
            DoError::Upstream {
                status: 500,
                message: "boom (request_id 4d9d8375)".into()
            }
        );
        let long = "x".repeat(5000);
        let DoError::Upstream { message, .. } = err(502, &long) else {
            panic!("502 is upstream")
        };
        assert!(message.chars().count() <= usage_core::transport::MAX_MESSAGE_CHARS + 1);
        let DoError::Upstream { message, .. } =
            parse_error(StatusCode::BAD_GATEWAY, &[0xff, 0xfe, 0x00], None)
        else {
            panic!("502 is upstream")
        };
        assert_eq!(message, "non-text body (3 bytes)");
    }

    #[test]
    fn a_429_carries_the_delay_the_headers_gave() {
        assert_eq!(
            parse_error(
                StatusCode::TOO_MANY_REQUESTS,
                b"{}",
                Some(Duration::from_secs(42))
            ),
            DoError::RateLimited {
                retry_after: Some(Duration::from_secs(42))
            }
        );
    }

    #[test]
    fn seconds_format() {
        let t = DateTime::parse_from_rfc3339("2024-01-31T23:59:59.999+00:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339_seconds(t), "2024-01-31T23:59:59Z");
    }

    fn client(base: &str) -> DoClient {
        DoClient::new(
            "do",
            reqwest::Client::new(),
            Url::parse(base).unwrap(),
            SecretString::from("t"),
            NonZeroU32::new(2).unwrap(),
            1,
            usage_core::http::DEFAULT_MAX_BODY_BYTES,
        )
    }

    #[test]
    fn endpoints_encode_segments_and_keep_prefixes() {
        let c = client("http://127.0.0.1:1/proxy/do/");
        assert_eq!(
            c.endpoint(&["v2", "gen-ai", "agents", "a/b?c", "usage"])
                .as_str(),
            "http://127.0.0.1:1/proxy/do/v2/gen-ai/agents/a%2Fb%3Fc/usage"
        );
        let c = client("http://127.0.0.1:1");
        assert_eq!(
            c.first_agents_page(true).as_str(),
            "http://127.0.0.1:1/v2/gen-ai/agents?per_page=200&only_deployed=true"
        );
    }

    #[test]
    fn next_links_stay_on_the_configured_origin() {
        let c = client("http://127.0.0.1:1");
        let cur = c.first_agents_page(false);
        assert_eq!(
            c.next_page(
                &cur,
                "http://127.0.0.1:1/v2/gen-ai/agents?page=2&per_page=200"
            )
            .unwrap()
            .as_str(),
            "http://127.0.0.1:1/v2/gen-ai/agents?page=2&per_page=200"
        );
        assert!(c.next_page(&cur, "/v2/gen-ai/agents?page=2").is_ok());
        assert!(matches!(
            c.next_page(&cur, "https://evil.example/v2/gen-ai/agents?page=2"),
            Err(DoError::Decode { .. })
        ));
    }

    #[tokio::test]
    async fn budget_grants_all_or_nothing_and_reports_the_wait() {
        let c = client("http://127.0.0.1:1");
        c.admit(2).await.unwrap();
        let started = Instant::now();
        let e = c.admit(1).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "gives up at once"
        );
        let DoError::RateLimited {
            retry_after: Some(wait),
        } = e
        else {
            panic!("{e:?}")
        };
        assert!(
            wait > usage_core::budget::DEFAULT_MAX_WAIT && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(matches!(
            c.admit(3).await,
            Err(DoError::InvalidQuery { .. })
        ));
        c.admit(0).await.unwrap();
    }

    #[tokio::test]
    async fn a_vendor_429_blocks_further_calls() {
        let c = client("http://127.0.0.1:1");
        c.transport.budget().block_for(Duration::from_secs(29));
        let e = c.admit(1).await.unwrap_err();
        assert_eq!(
            e,
            DoError::RateLimited {
                retry_after: Some(Duration::from_secs(29))
            }
        );
        // A short block is waited out.
        let c = client("http://127.0.0.1:1");
        c.transport.budget().block_for(Duration::from_millis(100));
        c.admit(1).await.unwrap();
    }
}
