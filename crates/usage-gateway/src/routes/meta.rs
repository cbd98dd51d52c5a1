//! `GET /v1/sources`, `GET /v1/agents`, `/healthz`, `/readyz`.

use std::sync::Arc;
use std::time::Instant;

use actix_web::{HttpResponse, web};
use usage_core::ProviderError;

use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::fetch::Source;
use crate::model::{
    AgentEntry, AgentsResponse, HealthResponse, ProviderEntry, SourceEntry, SourceHealth,
    SourceStatus, SourceStore, SourcesResponse,
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
        (status = 200, description = "Sources the caller may see; never a secret", body = SourcesResponse, example = json!({
            "sources": [
                {"source": "do-prod", "provider": "digitalocean", "attribution": "exact", "dimensions": ["agent", "usage_type"], "filters": ["agent"], "last_success": "2026-11-08T09:59:41.512Z", "last_error_at": null, "last_error": null, "circuit": "closed"},
                {"source": "kibana-marketing", "provider": "kibana", "attribution": "conversation", "dimensions": ["agent", "user", "conversation"], "filters": ["agent", "user"], "last_success": "2026-11-08T09:12:03.204Z", "last_error_at": "2026-11-08T09:58:17.930Z", "last_error": {"type": "urn:usage-gateway:problem:upstream_unreachable", "title": "Vendor request failed", "status": 502, "detail": "kibana-marketing: the vendor could not be reached"}, "circuit": "open"}
            ],
            "providers": [
                {"provider": "digitalocean", "description": "DigitalOcean Gen-AI agents: token usage per agent (GET /v2/gen-ai/agents/{uuid}/usage), agents discovered or listed"},
                {"provider": "kibana", "description": "Kibana Agent Builder: per-conversation token totals of a space's agents (consumption API), placed at the conversation's last update"}
            ]
        })),
        (status = 401, description = "Missing or invalid bearer token", content((Problem = "application/problem+json", example = crate::openapi::examples::unauthorized))),
        (status = 403, description = "Insufficient scope or no access", content((Problem = "application/problem+json", example = crate::openapi::examples::forbidden))),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn list_sources(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let visible: Vec<&Arc<Source>> = caller
        .access
        .sources
        .keys()
        .filter_map(|name| state.sources.get(name))
        .collect();
    let stores = futures::future::join_all(visible.iter().map(|s| store_view(&state, s))).await;
    let sources = visible
        .into_iter()
        .zip(stores)
        .map(|(s, store)| {
            let h = s.health.lock().map(|h| h.clone()).unwrap_or_default();
            SourceHealth {
                store,
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
    let providers = state
        .registry
        .providers()
        .iter()
        .map(|p| ProviderEntry {
            provider: p.kind,
            description: p.description.to_owned(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(SourcesResponse { sources, providers }))
}

/// The store's view of a source: its syncer's progress as published with its lease (so that
/// every replica shows the syncing replica's), else this process's own; the store is asked for
/// at most one second.
async fn store_view(state: &AppState, source: &Arc<Source>) -> Option<SourceStore> {
    let handle = state.store.as_ref()?;
    let name = source.info.name.as_str();
    // The syncer's lease, with the progress it published (asked for at most one second).
    let lease = match handle.get() {
        Some(store) => tokio::time::timeout(std::time::Duration::from_secs(1), store.lease(name))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten(),
        None => None,
    };
    // Sources placed exactly are stored by the hour; those placed by conversation (Kibana)
    // through snapshots of their conversations' totals, while some replica polls them (this
    // one, or one holding the source's lease).
    let stored = crate::stored::is_stored(source)
        || (source.info.attribution == usage_core::Attribution::Conversation
            && (handle.config.sync || lease.is_some()));
    let mut view = SourceStore {
        engine: handle.engine.to_owned(),
        stored,
        connected: handle.get().is_some(),
        sync: None,
        lease_expired: None,
        last_error: handle
            .last_error()
            .map(|(at, message)| format!("{}: {message}", ts(at))),
    };
    if !stored {
        return Some(view);
    }
    if let Some(lease) = lease {
        view.lease_expired = Some(lease.expired);
        view.sync = lease
            .progress
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok());
    }
    if view.sync.is_none() {
        view.sync = handle
            .progress
            .lock()
            .ok()
            .and_then(|p| p.get(name).cloned());
    }
    Some(view)
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
        (status = 200, description = "Agents the caller may see; sources that failed are listed in `sources`", body = AgentsResponse, example = json!({
            "agents": [
                {"source": "cbk-main", "provider": "chatbotkit", "agent": "cm3k8x1qz0001a8s6d2f4g7h9", "agent_name": "Helpdesk bot"},
                {"source": "do-prod", "provider": "digitalocean", "agent": "c441bf77-81d6-11ef-bf8f-4e013e2ddde4", "agent_name": "support-agent"},
                {"source": "do-prod", "provider": "digitalocean", "agent": "d7a2e410-9c3b-11ef-bf8f-4e013e2ddde4", "agent_name": null}
            ],
            "sources": [
                {"source": "kibana-marketing", "provider": "kibana", "status": "timeout", "attribution": "conversation", "cached": false, "upstream_requests": 0, "duration_ms": 10000.4, "error": {"type": "urn:usage-gateway:problem:timeout", "title": "Source timed out", "status": 504, "detail": "kibana-marketing: timed out after 10000ms"}}
            ]
        })),
        (status = 401, description = "Missing or invalid bearer token", content((Problem = "application/problem+json", example = crate::openapi::examples::unauthorized))),
        (status = 403, description = "Insufficient scope or no access", content((Problem = "application/problem+json", example = crate::openapi::examples::forbidden))),
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
                            model: a.model.clone(),
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
            cost_source: None,
            store_coverage: None,
            store_synced_at: None,
            attribution_resolution_seconds: None,
            error: Some(Problem::from_provider(&err)),
            vendor_bucket_width: None,
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
    responses((status = 200, description = "Alive", body = HealthResponse, example = json!({"status": "ok"})))
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
    responses((status = 200, description = "Ready to serve", body = HealthResponse, example = json!({"status": "ready"})))
)]
pub async fn readyz() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse {
        status: "ready".into(),
    })
}
