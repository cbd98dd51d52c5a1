//! Wiring: the actix-web routes and default handlers.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::routes::{meta, usage};
use crate::state::AppState;

/// Registers every route on an actix `ServiceConfig`; `/metrics` too when `with_metrics`.
pub fn configure(
    state: web::Data<AppState>,
    openapi_json: Arc<String>,
    with_metrics: bool,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        let doc = openapi_json.clone();
        if with_metrics {
            cfg.route("/metrics", web::get().to(metrics));
        }
        cfg.app_data(state)
            .service(
                web::resource("/v1/usage")
                    .route(web::get().to(usage::get_usage))
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
            .route("/healthz", web::get().to(meta::healthz))
            .route("/readyz", web::get().to(meta::readyz))
            .route(
                "/openapi.json",
                web::get().to(move || {
                    let doc = doc.clone();
                    async move {
                        HttpResponse::Ok()
                            .insert_header((header::CONTENT_TYPE, "application/json"))
                            .body(doc.as_str().to_owned())
                    }
                }),
            )
            .service(utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}").config(
                utoipa_swagger_ui::Config::new(["/openapi.json"]).persist_authorization(true),
            ))
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

async fn method_not_allowed() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed)
}

/// Answers unknown routes with a problem+json 404.
pub async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::NotFound)
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(crate::obs::render(&state))
}
