//! HTTP calls to Kibana (request building and decoding), and the one function that turns an
//! error status into an error, on usage-core's shared [`Transport`] (budget, counting, body cap,
//! rate-limit headers, transport errors).

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;
use usage_core::budget::Budget;
use usage_core::transport::{Admission, Refusal, Transport, TransportError, Vendor, truncate};

use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::model::{
    AgentDefinition, AgentsResponse, BoomError, ConsumptionRequest, ConsumptionResponse,
};

/// The versioned-route API version every Agent Builder public route has.
pub(crate) const API_VERSION: &str = "2023-10-31";

/// Which route a request went to (it decides what a 404 means).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /api/agent_builder/agents`.
    Agents,
    /// `POST /api/agent_builder/agents/{agent_id}/consumption`.
    Consumption,
}

/// How requests authenticate.
#[derive(Clone)]
enum Auth {
    ApiKey(SecretString),
    Basic {
        username: String,
        password: SecretString,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ApiKey(_) => f.write_str("ApiKey([REDACTED])"),
            Self::Basic { username, .. } => write!(f, "Basic({username}:[REDACTED])"),
        }
    }
}

/// Speaks Kibana's Agent Builder HTTP API for one source; every request passes the source's
/// [`Budget`] first.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    transport: Transport,
    base: Url,
    space: Option<String>,
    auth: Auth,
}

/// Kibana's part of the transport for one request: its error table, which reads a 404 by the
/// route it came from and the space.
struct Kibana<'a> {
    client: &'a Client,
    route: Route,
}

impl Vendor for Kibana<'_> {
    type Error = Error;

    fn refused(&self, answer: &Refusal<'_>) -> Error {
        self.client.err(parse_error(
            self.route,
            self.client.space.as_deref(),
            answer.status,
            answer.body,
            answer.retry_after,
        ))
    }

    fn failed(&self, error: TransportError) -> Error {
        self.client.err(match error {
            TransportError::Budget(e) => ErrorKind::RateLimited(e.retry_after()),
            TransportError::Timeout { elapsed } => ErrorKind::Timeout(elapsed),
            TransportError::Transport { message } => ErrorKind::Transport(message),
            e @ TransportError::TooLarge { .. } => ErrorKind::Decode(e.message()),
        })
    }

    fn pause(&self, error: &Error) -> Option<Duration> {
        match error.kind {
            ErrorKind::RateLimited(retry_after) => retry_after,
            _ => None,
        }
    }
}

impl Client {
    /// Creates a client from a validated config.
    pub(crate) fn new(
        source_name: &str,
        config: &Config,
        http: reqwest::Client,
    ) -> Result<Self, Error> {
        let auth = match (&config.api_key, &config.username, &config.password) {
            (Some(key), None, None) => Auth::ApiKey(key.clone()),
            (None, Some(username), Some(password)) => Auth::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            _ => {
                return Err(Error::new(
                    source_name,
                    ErrorKind::Config("set either `api_key`, or `username` and `password`".into()),
                ));
            }
        };
        let mut base = config.base_url.clone();
        base.set_query(None);
        base.set_fragment(None);
        Ok(Self {
            transport: Transport::new(
                source_name,
                http,
                Budget::new(
                    config.rate_limit_per_minute.and_then(NonZeroU32::new),
                    config.max_concurrency,
                ),
                config.max_body_bytes,
            ),
            base,
            space: config.space_prefix().map(str::to_owned),
            auth,
        })
    }

    fn err(&self, kind: ErrorKind) -> Error {
        Error::new(self.transport.source(), kind)
    }

    /// Builds `{base}[/s/{space}]/api/agent_builder/{tail…}`, percent-encoding each segment.
    pub(crate) fn url(&self, tail: &[&str]) -> Result<Url, Error> {
        let mut url = self.base.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| self.err(ErrorKind::Config("base_url cannot take a path".into())))?;
            segments.pop_if_empty();
            if let Some(space) = &self.space {
                segments.extend(["s", space.as_str()]);
            }
            segments.extend(["api", "agent_builder"]);
            segments.extend(tail);
        }
        Ok(url)
    }

    /// Lists the agents of the space.
    pub(crate) async fn list_agents(
        &self,
        sent: &AtomicU64,
    ) -> Result<Vec<AgentDefinition>, Error> {
        let url = self.url(&["agents"])?;
        let body: AgentsResponse = self
            .send(Route::Agents, Method::GET, url, None, sent)
            .await?;
        let results = body.results.ok_or_else(|| {
            self.err(ErrorKind::Decode(
                "the agents list has no `results` array".into(),
            ))
        })?;
        Ok(results.into_iter().filter_map(|a| a.0).collect())
    }

    /// Fetches one page of an agent's consumption.
    pub(crate) async fn consumption(
        &self,
        agent_id: &str,
        body: &ConsumptionRequest<'_>,
        sent: &AtomicU64,
    ) -> Result<ConsumptionResponse, Error> {
        let url = self.url(&["agents", agent_id, "consumption"])?;
        let json = serde_json::to_vec(body)
            .map_err(|e| self.err(ErrorKind::Config(format!("cannot encode the request: {e}"))))?;
        self.send(Route::Consumption, Method::POST, url, Some(json), sent)
            .await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        route: Route,
        method: Method,
        url: Url,
        json: Option<Vec<u8>>,
        sent: &AtomicU64,
    ) -> Result<T, Error> {
        let mut req = self
            .transport
            .http()
            .request(method, url)
            .header("kbn-xsrf", "true")
            .header("elastic-api-version", API_VERSION)
            .header(reqwest::header::ACCEPT, "application/json");
        req = match &self.auth {
            Auth::ApiKey(key) => {
                let mut value = HeaderValue::from_str(&format!("ApiKey {}", key.expose_secret()))
                    .map_err(|_| {
                    self.err(ErrorKind::Config(
                        "api_key is not a valid header value".into(),
                    ))
                })?;
                value.set_sensitive(true);
                req.header(AUTHORIZATION, value)
            }
            Auth::Basic { username, password } => {
                req.basic_auth(username, Some(password.expose_secret()))
            }
        };
        if let Some(json) = json {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json);
        }
        let vendor = Kibana {
            client: self,
            route,
        };
        let answer = self
            .transport
            .send(&vendor, Admission::Admit, req, Some(sent))
            .await?;
        let bytes = answer.body;
        decode_object(&bytes).map_err(|e| {
            self.err(ErrorKind::Decode(format!(
                "{} answer is not the documented JSON: {e}",
                route.describe()
            )))
        })
    }
}

impl Route {
    fn describe(self) -> &'static str {
        match self {
            Self::Agents => "the agents list",
            Self::Consumption => "the consumption",
        }
    }
}

/// Maps an error status and Kibana's Boom body `{statusCode, error, message}` to an error.
///
/// 400 is a configuration error or a bug quoting Kibana's message; 401 and 403 (privilege or
/// license) are not retried; 404 means the route is absent (Kibana too old, plugin off, or an
/// unknown space); 5xx stay transient, since Elasticsearch rejections arrive as 500.
///
/// `retry_after` is the delay the answer's rate-limit headers give (a 429's).
pub(crate) fn parse_error(
    route: Route,
    space: Option<&str>,
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
) -> ErrorKind {
    let boom: BoomError = serde_json::from_slice(body).unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("no reason phrase");
    let message = boom
        .message
        .0
        .filter(|m| !m.trim().is_empty())
        .or(boom.error.0)
        .map_or_else(|| reason.to_owned(), |m| truncate(&m));
    match status.as_u16() {
        400 => ErrorKind::BadRequest(message),
        401 => ErrorKind::Unauthenticated(message),
        403 => ErrorKind::Forbidden(message),
        404 => {
            let what = match route {
                Route::Consumption => "Agent Builder consumption API not available (Kibana < 9.4?)",
                Route::Agents => {
                    "Agent Builder agents API not available (Kibana < 9.2, or Agent Builder disabled?)"
                }
            };
            let space =
                space.map_or_else(String::new, |s| format!(", or space `{s}` does not exist"));
            ErrorKind::NotFound {
                hint: format!("{what}{space}"),
                message,
            }
        }
        429 => ErrorKind::RateLimited(retry_after),
        code => ErrorKind::Status {
            status: code,
            message,
        },
    }
}

/// Reads a JSON object into `T` (serde would also read a struct from an array).
pub(crate) fn decode_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err("expected a JSON object".to_owned());
    }
    usage_core::http::json(bytes).map_err(|e| truncate(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use usage_core::ProviderError;

    use super::*;

    fn map(route: Route, status: u16, body: &str) -> ProviderError {
        let kind = parse_error(
            route,
            None,
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
            None,
        );
        Error::new("kb", kind).into()
    }

    #[test]
    fn status_table() {
        let e = map(
            Route::Consumption,
            400,
            r#"{"statusCode":400,"error":"Bad Request","message":"[request body.size]: Value must be equal to or lower than [100]."}"#,
        );
        assert!(matches!(e, ProviderError::Config { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("[request body.size]: Value must be equal to or lower than [100].")
        );
        assert!(!e.is_transient());

        let e = map(
            Route::Consumption,
            401,
            r#"{"statusCode":401,"error":"Unauthorized","message":"unable to authenticate user"}"#,
        );
        assert!(matches!(e, ProviderError::Unauthenticated { .. }), "{e:?}");

        let license =
            "Invalid license level. Agent Builder APIs require an Enterprise license or higher.";
        let e = map(
            Route::Consumption,
            403,
            &format!(r#"{{"statusCode":403,"error":"Forbidden","message":"{license}"}}"#),
        );
        assert!(
            matches!(&e, ProviderError::Forbidden { message, .. } if message == license),
            "{e:?}"
        );
        assert!(!e.is_transient());

        let e = map(
            Route::Consumption,
            404,
            r#"{"statusCode":404,"error":"Not Found","message":"Not Found"}"#,
        );
        assert!(matches!(e, ProviderError::NotFound { .. }));
        assert!(
            e.to_string()
                .contains("Agent Builder consumption API not available (Kibana < 9.4?)"),
            "{e}"
        );
        let e = map(Route::Agents, 404, "<html>nope</html>");
        assert!(e.to_string().contains("agents API not available"), "{e}");
        assert!(e.to_string().contains("Kibana said: Not Found"), "{e}");

        let e = map(
            Route::Consumption,
            500,
            r#"{"statusCode":500,"error":"Internal Server Error","message":"rejected execution of coordinating operation"}"#,
        );
        assert!(matches!(e, ProviderError::Upstream { status: 500, .. }));
        assert!(e.is_transient());
        assert!(e.to_string().contains("rejected execution"));

        let e = map(Route::Consumption, 502, "");
        assert!(
            matches!(&e, ProviderError::Upstream { status: 502, message, .. } if message == "Bad Gateway")
        );

        let e = map(Route::Consumption, 409, r#"{"error":"Conflict"}"#);
        assert!(
            matches!(&e, ProviderError::Upstream { status: 409, message, .. } if message == "Conflict")
        );
    }

    #[test]
    fn space_named_in_404_and_retry_after_read() {
        let kind = parse_error(
            Route::Consumption,
            Some("ops"),
            StatusCode::NOT_FOUND,
            b"{}",
            None,
        );
        assert!(
            kind.to_string().contains("space `ops` does not exist"),
            "{kind}"
        );
        let kind = parse_error(
            Route::Consumption,
            None,
            StatusCode::TOO_MANY_REQUESTS,
            b"",
            Some(Duration::from_secs(7)),
        );
        assert_eq!(kind, ErrorKind::RateLimited(Some(Duration::from_secs(7))));
    }

    #[test]
    fn only_objects_decode() {
        assert!(decode_object::<ConsumptionResponse>(b"[]").is_err());
        assert!(decode_object::<ConsumptionResponse>(b"{\"").is_err());
        assert!(decode_object::<ConsumptionResponse>(b"{\"results\": 3}").is_err());
        assert!(decode_object::<ConsumptionResponse>(b"{\"results\": []}").is_ok());
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "x".repeat(5000);
        let e = map(
            Route::Consumption,
            500,
            &format!(r#"{{"message":"{long}"}}"#),
        );
        assert!(e.to_string().len() < 400, "{}", e.to_string().len());
        assert_eq!(truncate("ééé"), "ééé");
    }

    #[test]
    fn urls_carry_space_base_path_and_encoded_ids() {
        let http = reqwest::Client::new();
        let cfg = Config {
            space: Some("marketing".into()),
            ..Config::with_api_key("http://kb.local:5601/kibana/".parse().unwrap(), "k")
        };
        let c = Client::new("kb", &cfg, http.clone()).unwrap();
        assert_eq!(
            c.url(&["agents", "a/b c", "consumption"]).unwrap().as_str(),
            "http://kb.local:5601/kibana/s/marketing/api/agent_builder/agents/a%2Fb%20c/consumption"
        );
        let cfg = Config {
            space: Some("default".into()),
            ..Config::with_api_key("http://kb.local:5601".parse().unwrap(), "k")
        };
        let c = Client::new("kb", &cfg, http).unwrap();
        assert_eq!(
            c.url(&["agents"]).unwrap().as_str(),
            "http://kb.local:5601/api/agent_builder/agents"
        );
        assert!(!format!("{c:?}").contains("\"k\""));
    }
}
