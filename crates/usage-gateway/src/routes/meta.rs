//! `GET /v1/sources`, `GET /v1/agents`, `/healthz`, `/readyz`.

use std::sync::Arc;
use std::time::Instant;

use actix_web::{HttpResponse, web};
use usage_core::ProviderError;

use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::fetch::Source;
use crate::model::{
    AgentEntry, AgentsResponse, HealthResponse, SourceEntry, SourceHealth, SourceStatus,
    SourcesResponse,
};
use crate::render::ts;
use crate::state::AppState;

/// `GET /v1/sources`.
#[utoipa::path(
    get,
    path = "/v1/sources",
    tag = "sources",
    operation_id = "listSources",
    summary = "The caller's sources and their health",
    responses(
        (status = 200, description = "Sources the caller may see; never a secret", body = SourcesResponse),
        (status = 401, description = "Missing or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Insufficient scope or no access", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn list_sources(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let sources = caller
        .access
        .sources
        .keys()
        .filter_map(|name| state.sources.get(name))
        .map(|s| {
            let h = s.health.lock().map(|h| h.clone()).unwrap_or_default();
            SourceHealth {
                source: s.info.name.clone(),
                provider: s.info.provider,
                attribution: s.info.attribution,
                dimensions: s
                    .info
                    .dimensions
                    .iter()
                    .map(|d| d.as_str().to_owned())
                    .collect(),
                filters: s
                    .info
                    .filters
                    .iter()
                    .map(|d| d.as_str().to_owned())
                    .collect(),
                last_success: h.last_success.map(ts),
                last_error_at: h.last_error.as_ref().map(|(t, _)| ts(*t)),
                last_error: h.last_error.map(|(_, p)| p),
                circuit: s.resilient.circuit().as_str().to_owned(),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(SourcesResponse { sources }))
}

/// Lists a source's agents through its resilience layer (breaker, retries, deadline), cached.
async fn agents_of(
    source: &Arc<Source>,
    state: &AppState,
    deadline: tokio::time::Instant,
) -> Result<Arc<Vec<usage_core::Agent>>, ProviderError> {
    let source = source.clone();
    state
        .agents
        .try_get_with(source.info.name.clone(), async move {
            source.resilient.agents(deadline).await.map(Arc::new)
        })
        .await
        .map_err(|e| (*e).clone())
}

/// `GET /v1/agents`.
#[utoipa::path(
    get,
    path = "/v1/agents",
    tag = "sources",
    operation_id = "listAgents",
    summary = "Agents discovered across the caller's sources",
    responses(
        (status = 200, description = "Agents the caller may see; sources that failed are listed in `sources`", body = AgentsResponse),
        (status = 401, description = "Missing or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Insufficient scope or no access", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn list_agents(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let deadline = tokio::time::Instant::now() + state.server.request_timeout;
    let sources: Vec<Arc<Source>> = caller
        .access
        .sources
        .keys()
        .filter_map(|n| state.sources.get(n).cloned())
        .collect();
    let results = futures::future::join_all(sources.iter().map(|s| {
        let state = &state;
        async move {
            let started = Instant::now();
            let r = tokio::time::timeout_at(deadline, agents_of(s, state, deadline)).await;
            (s, r, started.elapsed())
        }
    }))
    .await;
    let mut agents = Vec::new();
    let mut failed = Vec::new();
    for (s, r, elapsed) in results {
        let err = match r {
            Ok(Ok(list)) => {
                agents.extend(
                    list.iter()
                        .filter(|a| caller.access.allows_agent(&s.info.name, &a.id))
                        .map(|a| AgentEntry {
                            source: s.info.name.clone(),
                            provider: s.info.provider,
                            agent: a.id.clone(),
                            agent_name: a.name.clone(),
                        }),
                );
                continue;
            }
            Ok(Err(e)) => e,
            Err(_) => ProviderError::Timeout {
                source_name: s.info.name.clone(),
                elapsed,
            },
        };
        s.record(Err(&err));
        failed.push(SourceEntry {
            source: s.info.name.clone(),
            provider: s.info.provider,
            status: if matches!(err, ProviderError::Timeout { .. }) {
                SourceStatus::Timeout
            } else {
                SourceStatus::Error
            },
            attribution: s.info.attribution,
            cached: false,
            fetched_at: None,
            upstream_requests: 0,
            duration_ms: (elapsed.as_secs_f64() * 10_000.0).round() / 10.0,
            age_seconds: None,
            warnings: None,
            notes: Vec::new(),
            error: Some(Problem::from_provider(&err)),
        });
    }
    agents.sort_by(|a, b| (&a.source, &a.agent).cmp(&(&b.source, &b.agent)));
    Ok(HttpResponse::Ok().json(AgentsResponse {
        agents,
        sources: failed,
    }))
}

/// `GET /healthz`: the process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "Alive", body = HealthResponse))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse {
        status: "ok".into(),
    })
}

/// `GET /readyz`: configuration loaded and listeners up.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses((status = 200, description = "Ready to serve", body = HealthResponse))
)]
pub async fn readyz() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse {
        status: "ready".into(),
    })
}
