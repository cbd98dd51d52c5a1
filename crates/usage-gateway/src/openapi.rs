//! The OpenAPI 3.1 document, generated from the handlers and schemas.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ParamError, Problem};
use crate::model::{
    AgentEntry, AgentsResponse, HealthResponse, QueryEcho, SourceEntry, SourceHealth, SourceStatus,
    SourcesResponse, UnitTotals, UsageResponseSchema, UsageRowSchema,
};

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
        crate::routes::meta::list_sources,
        crate::routes::meta::list_agents,
        crate::routes::meta::healthz,
        crate::routes::meta::readyz,
        crate::app::openapi_json,
        crate::app::metrics,
    ),
    components(schemas(
        UsageResponseSchema, UsageRowSchema, QueryEcho, UnitTotals, SourceEntry, SourceStatus,
        Problem, ParamError, AgentsResponse, AgentEntry, SourcesResponse, SourceHealth, HealthResponse,
    )),
    modifiers(&BearerJwt),
    tags(
        (name = "usage", description = "Normalized token usage"),
        (name = "sources", description = "Sources and agents"),
        (name = "operations", description = "Liveness and readiness"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// Returns the document as pretty JSON (what `/openapi.json` serves and `openapi/openapi.json` holds).
pub fn document_json() -> String {
    let mut doc = ApiDoc::openapi();
    env!("CARGO_PKG_VERSION").clone_into(&mut doc.info.version);
    doc.to_pretty_json().unwrap_or_default() + "\n"
}

/// Returns the document, generated once per process.
pub fn document() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(document_json)
}
