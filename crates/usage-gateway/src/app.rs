//! Wiring: the actix-web routes and default handlers.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::routes::{meta, ui, usage};
use crate::state::AppState;

/// Registers every route on an actix `ServiceConfig`; `/metrics` too when `with_metrics`.
pub fn configure(
    state: web::Data<AppState>,
    with_metrics: bool,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        if with_metrics {
            cfg.service(get_only("/metrics", web::get().to(metrics)));
        }
        cfg.app_data(state)
            .service(
                web::resource("/v1/usage")
                    .route(web::get().to(usage::get_usage))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/v1/usage.csv")
                    .route(web::get().to(usage::get_usage_csv))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/v1/usage/focus")
                    .route(web::get().to(usage::get_usage_focus))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/v1/budgets")
                    .route(web::get().to(crate::routes::budgets::list_budgets))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/v1/sources")
                    .route(web::get().to(meta::list_sources))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/v1/agents")
                    .route(web::get().to(meta::list_agents))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(get_only("/healthz", web::get().to(meta::healthz)))
            .service(get_only("/readyz", web::get().to(meta::readyz)))
            .service(get_only("/openapi.json", web::get().to(openapi_json)))
            .service(utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}").config(
                utoipa_swagger_ui::Config::new(["/openapi.json"]).persist_authorization(true),
            ))
            .configure(ui::configure)
            .route(
                "/docs",
                web::get().to(|| async {
                    HttpResponse::PermanentRedirect()
                        .insert_header((header::LOCATION, "/docs/"))
                        .finish()
                }),
            );
    }
}

/// A resource answering `route` and 405 (with `Allow: GET`) to every other method.
pub fn get_only(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(method_not_allowed))
}

/// Answers a method a route does not serve with a problem+json 405 and `Allow: GET`.
pub async fn method_not_allowed() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed)
}

/// Answers unknown routes with a problem+json 404.
pub async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::NotFound)
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document (identical to the committed openapi/openapi.json)", content_type = "application/json", body = Object, example = json!({
        "openapi": "3.1.0",
        "info": {"title": "usage-gateway", "version": "0.1.0", "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "paths": {"/v1/usage": {"get": {"operationId": "getUsage", "tags": ["usage"], "security": [{"bearer_jwt": []}]}}},
        "components": {"securitySchemes": {"bearer_jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}}
    })))
)]
pub async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(state.openapi.clone())
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    description = "Served on the main listener, or only on `server.metrics_listen` when that is set. Every family has `# HELP`; the gateway's own are prefixed `usage_gateway_`, process metrics keep their standard `process_` names.",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String, example = "# HELP usage_gateway_http_requests_total HTTP requests answered, by route, method and status\n# TYPE usage_gateway_http_requests_total counter\nusage_gateway_http_requests_total{route=\"/v1/usage\",method=\"GET\",status=\"200\"} 1042\n# HELP usage_gateway_circuit_state Circuit breaker state per source: 1 for the current state (closed, half_open, open), 0 for the others\n# TYPE usage_gateway_circuit_state gauge\nusage_gateway_circuit_state{source=\"do-prod\",state=\"closed\"} 1\nusage_gateway_circuit_state{source=\"do-prod\",state=\"half_open\"} 0\nusage_gateway_circuit_state{source=\"do-prod\",state=\"open\"} 0\n# HELP usage_gateway_build_info Always 1; the version label is the gateway's version\n# TYPE usage_gateway_build_info gauge\nusage_gateway_build_info{version=\"0.1.0\"} 1\n"))
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    crate::budgets::refresh_if_due(&state);
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(crate::obs::render(&state))
}
