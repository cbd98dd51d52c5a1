//! Monthly budgets (`[[budgets]]`): what a source, an agent, a user or everything has cost in
//! the current calendar month, the month's forecast, `GET /v1/budgets`, and the Prometheus
//! gauges `usage_gateway_budget_spent_ratio` / `usage_gateway_budget_forecast_ratio` that an
//! existing alerting stack (Alertmanager) fires on. The spend is the cost the usage answers
//! carry (vendor cost reports, `[[prices]]`), through the same fan-out, caches and store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Serialize;
use usage_core::Window;
use usage_core::money::{Currency, Money};
use usage_core::time::{self, Bucket};
use utoipa::ToSchema;

use crate::auth::{Access, AgentScope};
use crate::config::BudgetConfig;
use crate::error::Problem;
use crate::model::SourceEntry;
use crate::query::UsageRequest;
use crate::state::AppState;

/// How old the gauges may get before a scrape of `/metrics` brings them up to date (the usage
/// and cost caches keep repeats cheap).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// A checked `[[budgets]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Its name.
    pub name: String,
    /// Only this source.
    pub source: Option<String>,
    /// Only this agent: (source, agent id).
    pub agent: Option<(String, String)>,
    /// Only this user.
    pub user: Option<String>,
    /// The monthly amount.
    pub amount: Money,
    /// The zone of the month's edges.
    pub tz: Tz,
}

impl Budget {
    /// Checks every entry (key paths as `budgets[i].field`): a unique name of safe characters,
    /// a positive amount, a currency, a zone, an agent written `<source>/<id>` of the same
    /// source as `source` when both are set.
    pub fn check_all(entries: &[BudgetConfig]) -> Result<Vec<Self>, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut out = Vec::new();
        let mut names = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            let mut problem = |field: &str, m: String| {
                problems.push((format!("budgets[{i}].{field}"), m));
            };
            let name_ok = !e.name.is_empty()
                && e.name.len() <= 64
                && e.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !name_ok {
                problem(
                    "name",
                    "must be 1 to 64 letters, digits, `-`, `_` or `.`".into(),
                );
            } else if let Some(prev) = names.insert(e.name.clone(), i) {
                problem(
                    "name",
                    format!("`{}` is already used by budgets[{prev}]", e.name),
                );
            }
            let currency = Currency::parse(&e.currency)
                .map_err(|m| problem("currency", m.to_string()))
                .ok();
            let amount = Decimal::from_str_exact(e.amount.trim())
                .ok()
                .filter(|d| d.is_sign_positive() && !d.is_zero());
            if amount.is_none() {
                problem(
                    "amount",
                    format!("`{}` is not a decimal amount above 0", e.amount),
                );
            }
            let tz = match e.tz.as_deref() {
                None => Some(chrono_tz::UTC),
                Some(s) => time::parse_tz(s).map_err(|m| problem("tz", m)).ok(),
            };
            let agent = match e.agent.as_deref() {
                None => None,
                Some(a) => match a.split_once('/') {
                    Some((s, id)) if !s.is_empty() && !id.is_empty() => {
                        if e.source.as_deref().is_some_and(|src| src != s) {
                            problem("agent", format!("`{a}` is not an agent of source `{s}`"));
                        }
                        Some((s.to_owned(), id.to_owned()))
                    }
                    _ => {
                        problem(
                            "agent",
                            format!("`{a}` is not written `<source>/<agent_id>`"),
                        );
                        None
                    }
                },
            };
            if let (Some(currency), Some(amount), Some(tz), true) = (currency, amount, tz, name_ok)
            {
                out.push(Self {
                    name: e.name.clone(),
                    source: e.source.clone(),
                    agent,
                    user: e.user.clone(),
                    amount: Money { amount, currency },
                    tz,
                });
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }

    /// The source the budget is limited to, by `source` or by `agent`.
    fn only_source(&self) -> Option<&str> {
        self.source
            .as_deref()
            .or(self.agent.as_ref().map(|(s, _)| s.as_str()))
    }

    /// Whether a caller with `access` may see this budget: everything it counts must be within
    /// the caller's access (a budget over every source needs access to every source).
    pub fn visible_to(&self, access: &Access, all_sources: &[String]) -> bool {
        let sees = |source: &str| {
            matches!(access.sources.get(source), Some(AgentScope::All))
                || self
                    .agent
                    .as_ref()
                    .is_some_and(|(s, id)| s == source && access.allows_agent(s, id))
        };
        match self.only_source() {
            Some(s) => sees(s),
            None => all_sources.iter().all(|s| sees(s)),
        }
    }
}

/// A budget's state this month.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BudgetStatus {
    /// The budget's name.
    #[schema(example = "openai-prod")]
    pub name: String,
    /// The source it counts, if limited to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The agent it counts (`<source>/<agent_id>`), if limited to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The user it counts, if limited to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The monthly amount.
    #[schema(value_type = crate::model::MoneyAmount)]
    pub amount: Money,
    /// The month's start (UTC; the local midnight of the 1st in the budget's zone).
    #[schema(value_type = String, format = DateTime)]
    pub period_start: String,
    /// The month's end (exclusive).
    #[schema(value_type = String, format = DateTime)]
    pub period_end: String,
    /// Spent this month up to now, in the budget's currency.
    #[schema(value_type = crate::model::MoneyAmount)]
    pub spent: Money,
    /// `spent / amount`.
    #[schema(example = 0.42)]
    pub spent_ratio: f64,
    /// The month's spend if it goes on at this month's average rate so far (`spent` × month
    /// length / time elapsed); absent in the month's first hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::model::MoneyAmount>)]
    pub forecast: Option<Money>,
    /// `forecast / amount`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast_ratio: Option<f64>,
    /// Every source the budget counts answered in full and no usage lacked a cost: otherwise
    /// `spent` is a lower bound (`unpriced` and `sources` say what is missing).
    pub complete: bool,
    /// Quantities no cost covers, per unit.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unpriced: BTreeMap<String, u64>,
    /// Remarks (e.g. cost in other currencies, not counted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The sources counted, as in `GET /v1/usage`.
    pub sources: Vec<SourceEntry>,
    /// Why the spend could not be worked out at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub error: Option<Problem>,
}

/// The body of `GET /v1/budgets`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BudgetsResponse {
    /// The caller's budgets, in configuration order.
    pub budgets: Vec<BudgetStatus>,
}

/// Works out a budget's state at `now`: the month-to-date query (from the month's start to
/// the end of today in the budget's zone, whole days, so that vendor cost reports of UTC days
/// apply to budgets kept in UTC) answered over every source, with every agent, costed as
/// `GET /v1/usage` costs it.
pub async fn evaluate(state: &AppState, budget: &Budget, now: DateTime<Utc>) -> BudgetStatus {
    let now = now.trunc_subsecs(0);
    let month = time::bucket_of(now, budget.tz, Bucket::Month);
    let today = time::bucket_of(now, budget.tz, Bucket::Day);
    let range = Window::new(month.start, today.end.min(month.end));
    let currency = budget.amount.currency;
    let zero = Money {
        amount: Decimal::ZERO,
        currency,
    };
    let mut status = BudgetStatus {
        name: budget.name.clone(),
        source: budget.source.clone(),
        agent: budget.agent.as_ref().map(|(s, a)| format!("{s}/{a}")),
        user: budget.user.clone(),
        amount: budget.amount,
        period_start: crate::render::ts(month.start),
        period_end: crate::render::ts(month.end),
        spent: zero,
        spent_ratio: 0.0,
        forecast: None,
        forecast_ratio: None,
        complete: false,
        unpriced: BTreeMap::new(),
        notes: Vec::new(),
        sources: Vec::new(),
        error: None,
    };
    let req = UsageRequest {
        range,
        tz: budget.tz,
        bucket: Bucket::None,
        windows: vec![range],
        group_by: Vec::new(),
        sources: budget
            .only_source()
            .map(str::to_owned)
            .into_iter()
            .collect(),
        providers: Vec::new(),
        agents: budget
            .agent
            .as_ref()
            .map(|(s, a)| format!("{s}/{a}"))
            .into_iter()
            .collect(),
        users: budget.user.clone().into_iter().collect(),
        models: Vec::new(),
        format: None,
        fill: crate::query::Fill::None,
        local_edges: false,
        timeless: false,
    };
    let everything = Access {
        sources: state
            .source_names
            .iter()
            .map(|s| (s.clone(), AgentScope::All))
            .collect(),
    };
    let answer = crate::routes::usage::answer(&req, &everything, false, &[], state).await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            status.error = Some(e.problem());
            return status;
        }
    };
    let mut spent = Some(Decimal::ZERO);
    let mut other = Vec::new();
    for (unit, cost) in &answer.agg.total_costs {
        if cost.overflowed {
            spent = None;
        }
        for m in cost.cost.iter() {
            if m.currency == currency {
                spent = spent.and_then(|s| s.checked_add(m.amount));
            } else {
                other.push(format!("{} {}", m.display_amount(), m.currency));
            }
        }
        if cost.unpriced > 0 {
            status
                .unpriced
                .insert(unit.as_str().to_owned(), cost.unpriced);
        }
    }
    if !other.is_empty() {
        status.notes.push(format!(
            "cost in other currencies is not counted: {}",
            other.join(", ")
        ));
    }
    let Some(spent) = spent else {
        status.error = Some(
            crate::error::ApiError::Internal(
                "the month's cost adds up beyond what a decimal holds".into(),
            )
            .problem(),
        );
        return status;
    };
    status.spent = Money {
        amount: spent,
        currency,
    };
    status.spent_ratio = ratio(spent, budget.amount.amount);
    let elapsed = (now - month.start).num_seconds();
    let length = (month.end - month.start).num_seconds();
    let forecast = spent
        .checked_mul(Decimal::from(length))
        .and_then(|x| x.checked_div(Decimal::from(elapsed)));
    if elapsed >= 3600
        && let Some(forecast) = forecast
    {
        status.forecast = Some(Money {
            amount: forecast,
            currency,
        });
        status.forecast_ratio = Some(ratio(forecast, budget.amount.amount));
    }
    status.complete = answer.complete && status.unpriced.is_empty();
    status.sources = answer.entries;
    status
}

/// `a / b` as a float for ratios (rounded to 6 places).
fn ratio(a: Decimal, b: Decimal) -> f64 {
    rust_decimal::prelude::ToPrimitive::to_f64(&a.checked_div(b).unwrap_or_default().round_dp(6))
        .unwrap_or(0.0)
}

/// Sets a budget's gauges. A budget that could not be worked out keeps its ratios (an outage
/// must not read as a budget back under its amount) and shows `complete` 0.
pub fn publish(status: &BudgetStatus) {
    let name = status.name.clone();
    if status.error.is_some() {
        metrics::gauge!(crate::obs::names::BUDGET_COMPLETE, "budget" => name).set(0.0);
        return;
    }
    metrics::gauge!(crate::obs::names::BUDGET_SPENT_RATIO, "budget" => name.clone())
        .set(status.spent_ratio);
    // In the month's first hour there is no forecast yet: the spent ratio stands in.
    metrics::gauge!(crate::obs::names::BUDGET_FORECAST_RATIO, "budget" => name.clone())
        .set(status.forecast_ratio.unwrap_or(status.spent_ratio));
    metrics::gauge!(crate::obs::names::BUDGET_COMPLETE, "budget" => name).set(if status.complete {
        1.0
    } else {
        0.0
    });
}

/// When the budgets were last worked out for the gauges.
#[derive(Debug, Default)]
pub struct Refresh {
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Brings every budget's gauges up to date in the background when they are older than
/// [`REFRESH_INTERVAL`] (or were never set): called at each scrape of `/metrics`, which shows
/// the figures of the previous evaluation, so that a gateway nobody scrapes spends no vendor
/// calls on budgets, and a scrape never waits for vendors.
pub fn refresh_if_due(state: &actix_web::web::Data<AppState>) {
    if state.budgets.is_empty() {
        return;
    }
    {
        let Ok(mut last) = state.budget_refresh.last.lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL) {
            return;
        }
        *last = Some(std::time::Instant::now());
    }
    let state: Arc<AppState> = state.clone().into_inner();
    tokio::spawn(async move {
        for b in state.budgets.iter() {
            let status = evaluate(&state, b, Utc::now()).await;
            if let Some(e) = &status.error {
                tracing::warn!(budget = %b.name, error = %e.detail, "budget not evaluated");
            }
            publish(&status);
        }
    });
}
