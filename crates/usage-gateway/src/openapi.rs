//! The OpenAPI 3.1 document, generated from the handlers and schemas.

use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ParamError, Problem};
use crate::model::{
    AgentEntry, AgentsResponse, HealthResponse, ProviderEntry, QueryEcho, SourceEntry,
    SourceHealth, SourceStatus, SourcesResponse, UnitTotals, UsageResponseSchema, UsageRowSchema,
};
use crate::query::{
    BucketEdgesParam, BucketParam, FillParam, FilterValueParam, FormatParam, GroupByParam,
    InstantParam, ProviderListParam, TimeZoneParam,
};
use crate::registry::Registry;

struct BearerJwt;

impl Modify for BearerJwt {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT signed with a configured key; needs the `usage:read` scope (`scope` or `scp`).",
                    ))
                    .build(),
            ),
        );
    }
}

/// Documents the request-size bounds (`crate::limits`) that every route enforces before
/// routing: 400 for a long query string, 413 for a body, 431 for too many or too large headers.
struct RequestLimits;

impl Modify for RequestLimits {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str, example: serde_json::Value| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    crate::error::PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .example(Some(example))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let Some(op) = item.get.as_mut() else {
                continue;
            };
            let responses = &mut op.responses.responses;
            responses.entry("400".to_owned()).or_insert_with(|| {
                problem(
                    "The query string is longer than `server.max_query_bytes`",
                    examples::query_too_long(),
                )
                .into()
            });
            responses.entry("413".to_owned()).or_insert_with(|| {
                problem(
                    "The request has a body larger than `server.max_body_bytes`",
                    examples::payload_too_large(),
                )
                .into()
            });
            responses.entry("431".to_owned()).or_insert_with(|| {
                problem(
                    "More header lines than `server.max_headers` or header bytes than `server.max_header_bytes`",
                    examples::headers_too_large(),
                )
                .into()
            });
        }
    }
}

/// Gives `GET /v1/usage.csv` and `GET /v1/usage/focus` the parameters of `GET /v1/usage` except
/// `format`, and its error responses (every status but 200 and 304), so that the operations
/// cannot drift apart.
struct UsageCsvShared;

impl Modify for UsageCsvShared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let paths = &mut openapi.paths.paths;
        let Some(json) = paths.get("/v1/usage").and_then(|i| i.get.clone()) else {
            return;
        };
        for path in ["/v1/usage.csv", "/v1/usage/focus"] {
            let Some(op) = paths.get_mut(path).and_then(|i| i.get.as_mut()) else {
                continue;
            };
            op.parameters = json.parameters.clone().map(|params| {
                params
                    .into_iter()
                    .filter(|p| !(p.name == "format" && p.parameter_in == ParameterIn::Query))
                    .collect()
            });
            for (status, response) in &json.responses.responses {
                if status != "200" && status != "304" {
                    op.responses
                        .responses
                        .entry(status.clone())
                        .or_insert_with(|| response.clone());
                }
            }
        }
    }
}

/// Example problem bodies shared by several routes, rendered by the real [`ApiError`](crate::error::ApiError) so that
/// their `type`, `title`, `status` and `detail` are what the gateway answers.
pub mod examples {
    use serde_json::Value;

    use crate::config::ServerConfig;
    use crate::error::{ApiError, ParamError};

    /// Renders `e` as the body of a request whose id is `id`.
    fn body(e: &ApiError, id: &str) -> Value {
        let mut p = e.problem();
        p.instance = Some(crate::obs::instance_uri(id));
        serde_json::to_value(p).unwrap_or_default()
    }

    /// 401: missing or invalid token.
    pub fn unauthorized() -> Value {
        body(
            &ApiError::Unauthorized,
            "4f0c2a9e-2b7d-4c1e-9a3f-0d6b8e5c7a21",
        )
    }

    /// 403: the token lacks the required scope.
    pub fn forbidden() -> Value {
        body(
            &ApiError::Forbidden("the token lacks the `usage:read` scope".into()),
            "2e8f4a61-c7d9-4b03-8e15-a6f0d3b92c47",
        )
    }

    /// 400: the query string is longer than `server.max_query_bytes`.
    pub fn query_too_long() -> Value {
        let max = ServerConfig::default().max_query_bytes;
        body(
            &ApiError::BadRequest(vec![ParamError::new(
                "(query)",
                format!(
                    "the query string has {} bytes; at most {max} are accepted",
                    max + 813
                ),
            )]),
            "0c6e2f14-8d3a-4b57-a9e1-5f2b7c4d8e30",
        )
    }

    /// 413: the request announces a body.
    pub fn payload_too_large() -> Value {
        body(
            &ApiError::PayloadTooLarge(format!(
                "this API takes no request body; at most {} bytes are accepted",
                ServerConfig::default().max_body_bytes
            )),
            "7d3b9f02-5e6c-4a18-b4f7-c2e90a1d6b53",
        )
    }

    /// 431: more header lines than `server.max_headers`.
    pub fn headers_too_large() -> Value {
        let max = ServerConfig::default().max_headers;
        body(
            &ApiError::HeadersTooLarge(format!(
                "the request has {} header lines; at most {max} are accepted",
                max + 6
            )),
            "a5e1c8d4-3f72-4b9a-8d06-1e4b7f2c9a85",
        )
    }
}

/// The API document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "usage-gateway",
        description = "One endpoint for AI agent token usage across DigitalOcean Gen-AI, Kibana Agent Builder and ChatBotKit: normalized, cached, JWT-protected.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        crate::routes::usage::get_usage,
        crate::routes::usage::get_usage_csv,
        crate::routes::usage::get_usage_focus,
        crate::routes::budgets::list_budgets,
        crate::routes::meta::list_sources,
        crate::routes::meta::list_agents,
        crate::routes::meta::healthz,
        crate::routes::meta::readyz,
        crate::app::openapi_json,
        crate::app::metrics,
    ),
    components(schemas(
        UsageResponseSchema, UsageRowSchema, QueryEcho, UnitTotals, SourceEntry, SourceStatus,
        Problem, ParamError, AgentsResponse, AgentEntry, SourcesResponse, SourceHealth, ProviderEntry, HealthResponse,
        InstantParam, TimeZoneParam, BucketParam, FormatParam, GroupByParam, ProviderListParam,
        FilterValueParam, FillParam, BucketEdgesParam, crate::model::MoneyAmount,
        crate::model::CostSource, crate::budgets::BudgetsResponse, crate::budgets::BudgetStatus,
    )),
    modifiers(&BearerJwt, &UsageCsvShared, &RequestLimits),
    tags(
        (name = "usage", description = "Normalized token usage"),
        (name = "sources", description = "Sources and agents"),
        (name = "budgets", description = "Monthly budgets and their spend"),
        (name = "operations", description = "Liveness and readiness"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// States the registered providers: the `ProviderKind` schema's `enum` and the pattern of the
/// `provider` filter's comma lists.
struct Providers<'a>(&'a Registry);

impl Modify for Providers<'_> {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::ObjectBuilder;
        use utoipa::openapi::schema::Type;
        let names: Vec<&str> = self.0.kinds().iter().map(|k| k.as_str()).collect();
        let described: Vec<String> = self
            .0
            .providers()
            .iter()
            .map(|p| format!("`{}`: {}", p.kind, p.description))
            .collect();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.schemas.insert(
            "ProviderKind".to_owned(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(format!(
                    "A registered provider. {}.",
                    described.join("; ")
                )))
                .enum_values(Some(names.clone()))
                .into(),
        );
        components.schemas.insert(
            "ProviderList".to_owned(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "A provider name, or a comma list of them (blanks and empty items ignored).",
                ))
                .pattern(Some(crate::query::comma_list_pattern(&names.join("|"))))
                .into(),
        );
    }
}

/// Returns the document of a gateway with the built-in providers as pretty JSON (what
/// `/openapi.json` serves and `openapi/openapi.json` holds).
pub fn document_json() -> String {
    document_json_for(&Registry::builtin())
}

/// Returns the document of a gateway with `registry`'s providers as pretty JSON.
pub fn document_json_for(registry: &Registry) -> String {
    let mut doc = ApiDoc::openapi();
    Providers(registry).modify(&mut doc);
    env!("CARGO_PKG_VERSION").clone_into(&mut doc.info.version);
    doc.to_pretty_json().unwrap_or_default() + "\n"
}
