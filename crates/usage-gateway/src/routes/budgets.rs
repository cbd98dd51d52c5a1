//! `GET /v1/budgets`: each budget the caller may see, with this month's spend and forecast.

use actix_web::{HttpResponse, web};
use chrono::Utc;

use crate::auth::Caller;
use crate::budgets::{self, BudgetsResponse};
use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// `GET /v1/budgets`.
#[utoipa::path(
    get,
    path = "/v1/budgets",
    tag = "budgets",
    operation_id = "listBudgets",
    summary = "Monthly budgets: spend to date and the month's forecast",
    description = "Each `[[budgets]]` entry the caller may see (everything a budget counts must \
be within the caller's access), worked out now: the cost of the month so far (from the 1st in the \
budget's zone to the end of today, as `GET /v1/usage` costs it: vendor cost reports, `[[prices]]`), \
in the budget's currency, over the monthly amount, and the forecast at this month's average rate. \
`complete: false` when a source failed or usage had no cost: `spent` is then a lower bound. The \
same figures are the Prometheus gauges `usage_gateway_budget_spent_ratio` and \
`usage_gateway_budget_forecast_ratio` (by `budget`), for alerting: a scrape of `/metrics` brings \
them up to date in the background when they are older than 5 minutes (the scrape shows the \
previous figures), and so does each call of this operation.",
    responses(
        (status = 200, description = "The caller's budgets", body = BudgetsResponse, example = json!({
            "budgets": [{
                "name": "openai-prod", "source": "openai",
                "amount": {"amount": "500.0000", "currency": "USD"},
                "period_start": "2026-12-01T00:00:00Z", "period_end": "2027-01-01T00:00:00Z",
                "spent": {"amount": "123.4567", "currency": "USD"}, "spent_ratio": 0.246_913,
                "forecast": {"amount": "548.7098", "currency": "USD"}, "forecast_ratio": 1.097_42,
                "complete": true,
                "sources": [{"source": "openai", "provider": "openai", "status": "ok", "attribution": "exact", "cached": true, "upstream_requests": 0, "duration_ms": 0.4, "cost_source": "vendor"}]
            }]
        })),
        (status = 401, description = "Missing or invalid bearer token", content((Problem = "application/problem+json", example = crate::openapi::examples::unauthorized))),
        (status = 403, description = "Insufficient scope or no access", content((Problem = "application/problem+json", example = crate::openapi::examples::forbidden))),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn list_budgets(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let visible = state
        .budgets
        .iter()
        .filter(|b| b.visible_to(&caller.access, &state.source_names));
    let budgets =
        futures::future::join_all(visible.map(|b| budgets::evaluate(&state, b, now))).await;
    // The gauges show what was last worked out, here or by the refresher.
    for b in &budgets {
        budgets::publish(b);
    }
    Ok(HttpResponse::Ok().json(BudgetsResponse { budgets }))
}
