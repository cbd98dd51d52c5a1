//! Wiring: the actix-web routes, default handlers, access log and the server.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, web};

use crate::auth::CallerSub;
use crate::error::ApiError;
use crate::routes::{meta, usage};
use crate::state::AppState;

/// Registers every route on an actix `ServiceConfig`.
pub fn configure(
    state: web::Data<AppState>,
    openapi_json: Arc<String>,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        let doc = openapi_json.clone();
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

/// Logs one line per request: method, route, status, latency and caller `sub` (never a token).
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let res = next.call(req).await?;
    let sub = res
        .request()
        .extensions()
        .get::<CallerSub>()
        .map(|s| s.0.clone());
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".into());
    tracing::info!(
        method = %method,
        path = %path,
        route = %route,
        status = res.status().as_u16(),
        latency_ms = (started.elapsed().as_secs_f64() * 1000.0),
        sub = sub.as_deref().unwrap_or("-"),
        "request"
    );
    Ok(res)
}
