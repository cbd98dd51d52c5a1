//! HTTP access to the ChatBotKit platform API: request building, the `take` fallback and the
//! one function ([`parse_error`]) that turns a status and body into an error, on usage-core's
//! shared [`Transport`] (budget, counting, body cap, the `X-RateLimit-*` pause, transport errors).

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;
use usage_core::transport::{Admission, Refusal, Transport, TransportError, Vendor, truncate};

use crate::error::{Error, ErrorKind};
use crate::model::{
    BotListResponse, BotUsageResponse, CursorWire, ErrorBody, PageEnd, UsagePage, UsageRecordWire,
};

/// A list that has not ended after this many pages is abandoned (a server looping cursors).
pub(crate) const MAX_PAGES: usize = 50_000;
/// The `take` list requests fall back to when the server refuses a larger one.
pub(crate) const FALLBACK_TAKE: u32 = 100;

/// One pass over a cursor-paged list (`/v1/usage/list`, `/v1/bot/list`): the cursors followed so
/// far and the rules that end the pass.
///
/// The list ends at an empty page, or an absent, empty or repeated cursor. A short page (fewer
/// items than `take`) does not end it: a server may serve fewer items than asked for without
/// saying so (the contract gives `take` no maximum), and stopping there would drop the rest.
/// Where the last page carries a cursor, this costs one request that comes back empty.
#[derive(Debug, Default)]
pub(crate) struct Pager {
    seen: HashSet<String>,
    pages: usize,
}

impl Pager {
    /// A pass that starts at `cursor` (`None`: the first page).
    pub(crate) fn starting_at(cursor: Option<&str>) -> Self {
        Self {
            seen: cursor.iter().map(|c| (*c).to_owned()).collect(),
            pages: 0,
        }
    }

    /// Counts a page about to be asked for `list`; past [`MAX_PAGES`] the pass fails instead
    /// (a server sending a fresh cursor forever).
    pub(crate) fn admit(&mut self, client: &Client, list: &str) -> Result<(), Error> {
        if self.pages >= MAX_PAGES {
            return Err(client.err(ErrorKind::Decode {
                message: format!("{list} paging did not end after {MAX_PAGES} pages"),
            }));
        }
        self.pages += 1;
        Ok(())
    }

    /// The cursor to read after a page of `items` items that carried `cursor`, or `None` when
    /// the list ended.
    pub(crate) fn next(&mut self, items: usize, cursor: Option<CursorWire>) -> Option<String> {
        let next = cursor.filter(|_| items > 0)?.as_token()?;
        self.seen.insert(next.clone()).then_some(next)
    }
}

/// Server-side filters sent to `/v1/usage/list` (the spec documents none; the server may ignore
/// them, so the caller filters again).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct RecordFilter {
    /// `botId`.
    pub bot_id: Option<String>,
    /// `contactId`.
    pub contact_id: Option<String>,
    /// `type`.
    pub usage_type: Option<String>,
}

/// A ChatBotKit API client bound to one source.
pub(crate) struct Client {
    /// The source's send path; its budget pauses on a spent `X-RateLimit-*` budget or a 429.
    transport: Transport,
    base: Url,
    token: SecretString,
    /// `take` for list requests: the configured page size until the server refuses it.
    take: AtomicU32,
    /// Whether the server has accepted `take` once: after that, a 400 is never a refusal of it.
    take_accepted: AtomicBool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &"[redacted]")
            .field("transport", &self.transport)
            .field("take", &self.take())
            .finish_non_exhaustive()
    }
}

/// ChatBotKit's part of the transport: its error table, with the source's name.
struct ChatBotKit<'a>(&'a str);

impl Vendor for ChatBotKit<'_> {
    type Error = Error;

    fn refused(&self, answer: &Refusal<'_>) -> Error {
        Error::new(
            self.0,
            parse_error(answer.status, answer.body, answer.retry_after),
        )
    }

    fn failed(&self, error: TransportError) -> Error {
        let kind = match error {
            TransportError::Budget(e) => ErrorKind::RateLimited {
                retry_after: e.retry_after(),
            },
            TransportError::Timeout { elapsed } => ErrorKind::Timeout { elapsed },
            TransportError::Transport { message } => ErrorKind::Transport { message },
            e @ TransportError::TooLarge { .. } => ErrorKind::Decode {
                message: e.message(),
            },
        };
        Error::new(self.0, kind)
    }

    fn pause(&self, error: &Error) -> Option<Duration> {
        match error.kind {
            ErrorKind::RateLimited { retry_after } => retry_after,
            _ => None,
        }
    }
}

impl Client {
    /// A client of the source `transport` sends for, with the configured page size `take`.
    pub(crate) fn new(transport: Transport, base: Url, token: SecretString, take: u32) -> Self {
        Self {
            transport,
            base,
            token,
            take: AtomicU32::new(take),
            take_accepted: AtomicBool::new(false),
        }
    }

    /// The `take` list requests send now.
    pub(crate) fn take(&self) -> u32 {
        self.take.load(Ordering::Relaxed)
    }

    /// `GET /v1/usage/list?take&order=desc[&cursor][&botId][&contactId][&type]`; `each` gets
    /// every record as it is decoded, while it still borrows the body.
    pub(crate) async fn list_usage(
        &self,
        cursor: Option<&str>,
        filter: &RecordFilter,
        calls: &AtomicU64,
        each: impl FnMut(UsageRecordWire<'_>),
    ) -> Result<PageEnd, Error> {
        let mut query = vec![("order", "desc".to_owned())];
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        if let Some(b) = &filter.bot_id {
            query.push(("botId", b.clone()));
        }
        if let Some(c) = &filter.contact_id {
            query.push(("contactId", c.clone()));
        }
        if let Some(t) = &filter.usage_type {
            query.push(("type", t.clone()));
        }
        let segments = ["v1", "usage", "list"];
        let (status, body) = self.get_list(&segments, query, calls).await?;
        usage_core::http::json_seed(&body, UsagePage(each))
            .map_err(|e| self.decode_error(status, &segments, &e))
    }

    /// `GET /v1/bot/list?take&order=desc[&cursor]`.
    pub(crate) async fn list_bots(
        &self,
        cursor: Option<&str>,
        calls: &AtomicU64,
    ) -> Result<BotListResponse, Error> {
        let mut query = vec![("order", "desc".to_owned())];
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        let segments = ["v1", "bot", "list"];
        let (status, body) = self.get_list(&segments, query, calls).await?;
        self.decode(status, &segments, &body)
    }

    /// Sends a list request with the source's `take` in front of `query`. Until the server has
    /// accepted a `take` above [`FALLBACK_TAKE`] once, a 400/422 answer to it may be a refusal of
    /// that `take`: the request is sent once more with [`FALLBACK_TAKE`], and if that one is
    /// accepted, the source keeps it from then on. Once the larger `take` was accepted, a 400
    /// means something else (a stale cursor) and is returned as it is.
    async fn get_list(
        &self,
        segments: &[&str],
        mut query: Vec<(&str, String)>,
        calls: &AtomicU64,
    ) -> Result<(StatusCode, Bytes), Error> {
        let take = self.take();
        query.insert(0, ("take", take.to_string()));
        match self.get(segments, &query, calls).await {
            Ok(answer) => {
                self.take_accepted.store(true, Ordering::Relaxed);
                Ok(answer)
            }
            Err(Error {
                kind: ErrorKind::BadRequest { status, message },
                ..
            }) if take > FALLBACK_TAKE
                && status != 0
                && !self.take_accepted.load(Ordering::Relaxed) =>
            {
                query[0].1 = FALLBACK_TAKE.to_string();
                let answer = self.get(segments, &query, calls).await?;
                if self.take.swap(FALLBACK_TAKE, Ordering::Relaxed) != FALLBACK_TAKE {
                    tracing::warn!(
                        source = %self.transport.source(),
                        refused = take,
                        take = FALLBACK_TAKE,
                        vendor_message = %message,
                        "ChatBotKit refused the configured page_size; list requests use the fallback from now on"
                    );
                }
                Ok(answer)
            }
            other => other,
        }
    }

    /// `GET /v1/bot/{botId}/usage/fetch?from&to` with both ends inclusive, as sent.
    pub(crate) async fn bot_usage(
        &self,
        bot_id: &str,
        from: &str,
        to: &str,
        calls: &AtomicU64,
    ) -> Result<BotUsageResponse, Error> {
        let query = [("from", from.to_owned()), ("to", to.to_owned())];
        self.get_json(&["v1", "bot", bot_id, "usage", "fetch"], &query, calls)
            .await
    }

    fn err(&self, kind: ErrorKind) -> Error {
        Error::new(self.transport.source(), kind)
    }

    fn url(&self, segments: &[&str]) -> Result<Url, Error> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| {
                self.err(ErrorKind::BadRequest {
                    status: 0,
                    message: "base_url cannot carry a path".into(),
                })
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        calls: &AtomicU64,
    ) -> Result<T, Error> {
        let (status, body) = self.get(segments, query, calls).await?;
        self.decode(status, segments, &body)
    }

    /// Sends a GET and returns a successful response's status and body.
    async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        calls: &AtomicU64,
    ) -> Result<(StatusCode, Bytes), Error> {
        let url = self.url(segments)?;
        tracing::debug!(source = %self.transport.source(), path = url.path(), "chatbotkit request");
        let request = self
            .transport
            .http()
            .get(url)
            .query(query)
            .bearer_auth(self.token.expose_secret())
            .header(ACCEPT, "application/json");
        let vendor = ChatBotKit(self.transport.source());
        let answer = self
            .transport
            .send(&vendor, Admission::Admit, request, Some(calls))
            .await?;
        Ok((answer.status, answer.body))
    }

    /// Decodes a successful response's body.
    fn decode<'a, T: Deserialize<'a>>(
        &self,
        status: StatusCode,
        segments: &[&str],
        body: &'a [u8],
    ) -> Result<T, Error> {
        usage_core::http::json(body).map_err(|e| self.decode_error(status, segments, &e))
    }

    fn decode_error(&self, status: StatusCode, segments: &[&str], e: &serde_json::Error) -> Error {
        self.err(ErrorKind::Decode {
            message: truncate(&format!("{} {}: {e}", status.as_u16(), segments.join("/"))),
        })
    }
}

/// Maps a non-success status, its headers and body to an error kind: the one status table.
///
/// Both error shapes are read (`{message, code}` and `{success:false, error:{code,message}}`);
/// only the vendor's short message (cut to 200 characters) or its code is kept, never the body.
/// `retry_after` is the delay the answer's rate-limit headers give (a 429's).
pub(crate) fn parse_error(
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
) -> ErrorKind {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let vendor_body = parsed
        .as_ref()
        .is_some_and(|b| b.code_and_message() != (None, None));
    let (code, message) = parsed.map(|b| b.code_and_message()).unwrap_or_default();
    let message = truncate(
        &message
            .or_else(|| code.clone())
            .unwrap_or_else(|| format!("HTTP {}", status.as_u16())),
    );
    let code = code.unwrap_or_default();
    if code.eq_ignore_ascii_case("LIMITS_REACHED") {
        return ErrorKind::QuotaExceeded { message };
    }
    match status.as_u16() {
        401 => ErrorKind::Unauthenticated { message },
        402 | 403 => ErrorKind::Forbidden { message },
        404 => ErrorKind::NotFound {
            message,
            vendor_body,
        },
        429 => ErrorKind::RateLimited { retry_after },
        s @ (400 | 422) => ErrorKind::BadRequest { status: s, message },
        s => ErrorKind::Status { status: s, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> StatusCode {
        StatusCode::from_u16(s).unwrap()
    }

    #[test]
    fn status_table() {
        let body = include_bytes!("../../../fixtures/chatbotkit/error_not_authenticated.json");
        assert_eq!(
            parse_error(status(401), body, None),
            ErrorKind::Unauthenticated {
                message: "Not authenticated".into()
            }
        );
        assert!(matches!(
            parse_error(status(403), b"{}", None),
            ErrorKind::Forbidden { message } if message == "HTTP 403"
        ));
        assert!(matches!(
            parse_error(
                status(402),
                br#"{"message":"No subscription","code":"NO_SUBSCRIPTION"}"#,
                None
            ),
            ErrorKind::Forbidden { .. }
        ));
        assert!(matches!(
            parse_error(
                status(404),
                br#"{"message":"Not found","code":"NOT_FOUND"}"#,
                None
            ),
            ErrorKind::NotFound {
                vendor_body: true,
                ..
            }
        ));
        assert!(matches!(
            parse_error(status(404), b"<html>nginx</html>", None),
            ErrorKind::NotFound { vendor_body: false, message } if message == "HTTP 404"
        ));
        assert!(matches!(
            parse_error(status(400), br#"{"message":"bad take","code":"BAD_REQUEST"}"#, None),
            ErrorKind::BadRequest { status: 400, message } if message == "bad take"
        ));
        assert!(matches!(
            parse_error(status(502), b"", None),
            ErrorKind::Status { status: 502, .. }
        ));
        assert!(matches!(
            parse_error(status(500), br#"{"code":"INTERNAL_SERVER_ERROR"}"#, None),
            ErrorKind::Status { status: 500, message } if message == "INTERNAL_SERVER_ERROR"
        ));
    }

    #[test]
    fn too_many_requests_vs_limits_reached() {
        let h = Some(Duration::from_secs(7));
        assert_eq!(
            parse_error(
                status(429),
                br#"{"message":"Too many requests","code":"TOO_MANY_REQUESTS"}"#,
                h
            ),
            ErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        let limits = include_bytes!("../../../fixtures/chatbotkit/error_limits_reached.json");
        assert!(matches!(
            parse_error(status(429), limits, h),
            ErrorKind::QuotaExceeded { message } if message.contains("limits of your plan")
        ));
        // The alternative shape carries the code in `error`.
        let alt = include_bytes!("../../../fixtures/chatbotkit/error_alt_shape.json");
        assert!(matches!(
            parse_error(status(429), alt, None),
            ErrorKind::RateLimited { retry_after: None }
        ));
        let alt_limits =
            br#"{"success":false,"error":{"code":"LIMITS_REACHED","message":"quota"}}"#;
        assert!(matches!(
            parse_error(status(429), alt_limits, None),
            ErrorKind::QuotaExceeded { .. }
        ));
    }

    #[test]
    fn messages_are_short_and_bodies_never_leak() {
        let long = format!(
            r#"{{"message":"{}","code":"BAD_REQUEST"}}"#,
            "x".repeat(1000)
        );
        let ErrorKind::BadRequest { message, .. } = parse_error(status(400), long.as_bytes(), None)
        else {
            panic!("bad request expected");
        };
        assert!(message.chars().count() <= 201);
        let ErrorKind::Status { message, .. } =
            parse_error(status(503), b"upstream secret-ish html body", None)
        else {
            panic!("status expected");
        };
        assert_eq!(message, "HTTP 503");
    }

    #[test]
    fn a_list_ends_at_an_empty_page_or_a_missing_or_repeated_cursor_only() {
        let mut pager = Pager::starting_at(Some("s"));
        let c = |s: &str| Some(CursorWire::S(s.to_owned()));
        assert_eq!(pager.next(3, c("a")).as_deref(), Some("a"));
        // A short page with a fresh cursor goes on.
        assert_eq!(pager.next(1, c("b")).as_deref(), Some("b"));
        assert_eq!(pager.next(3, c("a")), None, "repeated");
        assert_eq!(
            pager.next(3, c("s")),
            None,
            "the cursor the pass started at"
        );
        assert_eq!(pager.next(0, c("z")), None, "empty page");
        assert_eq!(pager.next(3, None), None, "no cursor");
        assert_eq!(pager.next(3, c(" ")), None, "an empty cursor");
        assert_eq!(pager.next(3, c("z")).as_deref(), Some("z"));
    }

    /// A client that is never asked to send anything, with the token `t`.
    fn client(base: &str) -> Client {
        let transport = Transport::new(
            "s",
            reqwest::Client::new(),
            usage_core::budget::Budget::new(None, 1),
            usage_core::http::DEFAULT_MAX_BODY_BYTES,
        );
        Client::new(
            transport,
            Url::parse(base).unwrap(),
            SecretString::from("t"),
            100,
        )
    }

    #[test]
    fn a_pass_gives_up_after_max_pages() {
        let client = client("http://127.0.0.1:1/");
        let mut pager = Pager::default();
        for _ in 0..MAX_PAGES {
            pager.admit(&client, "bot/list").unwrap();
        }
        let e = pager.admit(&client, "bot/list").unwrap_err();
        assert!(
            matches!(&e.kind, ErrorKind::Decode { message }
                if message == "bot/list paging did not end after 50000 pages"),
            "{e:?}"
        );
    }

    #[test]
    fn url_keeps_a_base_path_and_escapes_ids() {
        let c = client("http://127.0.0.1:1/api/");
        let u = c.url(&["v1", "bot", "a/b c", "usage", "fetch"]).unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:1/api/v1/bot/a%2Fb%20c/usage/fetch"
        );
        assert!(!format!("{c:?}").contains("\"t\""));
    }
}
