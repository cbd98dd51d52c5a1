//! The DigitalOcean Gen-AI simulator: list agents and agent usage (CONTRACTS.md §1).

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::data::digitalocean::floor_second;
use crate::data::{DoAgent, DoData};
use crate::server::{Reply, SimState, Vendor, bearer, query_get, query_pairs, with_rate_headers};

/// Go's zero time, which DigitalOcean serves for unset timestamps.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v2/gen-ai/agents")
            .route(web::get().to(agents))
            .default_service(web::to(not_found)),
    )
    .service(
        web::resource("/v2/gen-ai/agents/{uuid}/usage")
            .route(web::get().to(usage))
            .default_service(web::to(not_found)),
    );
}

async fn not_found(st: web::Data<SimState>) -> HttpResponse {
    st.serve("unknown", || Vendor::DigitalOcean.error(404, None))
        .await
}

async fn agents(req: HttpRequest, st: web::Data<SimState>) -> HttpResponse {
    st.serve("do.agents", || {
        guarded(&st, &req, |st| list_agents(st, &req))
    })
    .await
}

async fn usage(req: HttpRequest, st: web::Data<SimState>) -> HttpResponse {
    st.serve("do.usage", || {
        guarded(&st, &req, |st| agent_usage(st, &req))
    })
    .await
}

/// Checks the bearer token and the rate budget, then runs `f` and adds the rate headers.
fn guarded(st: &SimState, req: &HttpRequest, f: impl FnOnce(&SimState) -> Reply) -> Reply {
    if bearer(req) != Some(crate::DO_TOKEN) {
        return Vendor::DigitalOcean.error(401, None);
    }
    let Some(limiter) = &st.limiter else {
        return f(st);
    };
    match limiter.acquire(crate::DO_TOKEN) {
        Ok(info) => with_rate_headers(f(st), info),
        Err(info) => with_rate_headers(Vendor::DigitalOcean.error(429, None), info),
    }
}

fn time_or_zero(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || ZERO_TIME.to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

fn agent_json(a: &DoAgent) -> Value {
    let created = time_or_zero(Some(a.created_at));
    let status = if a.deployed {
        "STATUS_RUNNING"
    } else {
        "STATUS_WAITING_FOR_DEPLOYMENT"
    };
    json!({
        "uuid": a.uuid,
        "name": a.name,
        "created_at": created,
        "updated_at": time_or_zero(a.updated_at),
        "route_created_at": ZERO_TIME,
        "region": a.region,
        "instruction": format!("You are {}.", a.name),
        "description": "",
        "model": {"name": a.model, "uuid": format!("{}-model", &a.uuid[..8])},
        "deployment": {
            "status": status,
            "url": if a.deployed { format!("https://{}.agents.do-ai.run", &a.uuid[..8]) } else { String::new() },
            "visibility": if a.deployed { "VISIBILITY_PRIVATE" } else { "VISIBILITY_UNKNOWN" },
            "created_at": created,
        },
        "project_id": "37455431-84bd-4fa2-94cf-e8486f8f8c5e",
        "user_id": "18793",
        "tags": ["sim"],
        "k": 5,
        "max_tokens": 512,
        "temperature": 0.7,
        "top_p": 0.9,
        "log_insights_enabled": a.log_insights_enabled,
        "if_case": "",
    })
}

fn list_agents(st: &SimState, req: &HttpRequest) -> Reply {
    let q = query_pairs(req);
    let only_deployed = matches!(query_get(&q, "only_deployed"), Some("true" | "1"));
    let page = query_get(&q, "page")
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(1)
        .max(1);
    let per_page = query_get(&q, "per_page")
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(20)
        .clamp(1, 200);
    let agents: Vec<&DoAgent> = st
        .data
        .digitalocean
        .agents()
        .iter()
        .filter(|a| !only_deployed || a.deployed)
        .collect();
    let total = agents.len() as u64;
    let pages = total.div_ceil(per_page).max(1);
    let items: Vec<Value> = agents
        .iter()
        .skip(((page - 1) * per_page) as usize)
        .take(per_page as usize)
        .map(|a| agent_json(a))
        .collect();
    let mut body = json!({
        "agents": items,
        "meta": {"page": page, "pages": pages, "total": total},
    });
    if pages > 1 {
        let info = req.connection_info();
        let base = format!("{}://{}{}", info.scheme(), info.host(), req.path());
        let url = |p: u64| {
            let mut u = format!("{base}?page={p}&per_page={per_page}");
            if only_deployed {
                u.push_str("&only_deployed=true");
            }
            u
        };
        let mut links = serde_json::Map::new();
        if page > 1 {
            links.insert("first".into(), url(1).into());
            links.insert("previous".into(), url((page - 1).min(pages)).into());
        }
        if page < pages {
            links.insert("next".into(), url(page + 1).into());
            links.insert("last".into(), url(pages).into());
        }
        body["links"] = json!({ "pages": links });
    }
    Reply::ok(&body)
}

fn parse_time(v: &str, name: &str) -> Result<DateTime<Utc>, Reply> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            Vendor::DigitalOcean.error(
                400,
                Some(&format!(
                    "invalid {name} time {v:?}: expected RFC 3339, e.g. 2024-01-01T00:00:00Z"
                )),
            )
        })
}

fn agent_usage(st: &SimState, req: &HttpRequest) -> Reply {
    let data: &DoData = &st.data.digitalocean;
    let uuid = req.match_info().get("uuid").unwrap_or_default();
    let q = query_pairs(req);
    let start = match query_get(&q, "start").filter(|s| !s.is_empty()) {
        Some(s) => match parse_time(s, "start") {
            Ok(t) => t,
            Err(r) => return r,
        },
        None => floor_second(data.origin()),
    };
    let stop = match query_get(&q, "stop").filter(|s| !s.is_empty()) {
        Some(s) => match parse_time(s, "stop") {
            Ok(t) => t,
            Err(r) => return r,
        },
        None => floor_second(Utc::now()),
    };
    let Some(idx) = data.index_of(uuid) else {
        return Vendor::DigitalOcean.error(404, None);
    };
    let agent = &data.agents()[idx];
    // `stop` is inclusive at second precision: an event counts when floor(t) <= stop.
    let hi = floor_second(stop) + Duration::seconds(1);
    let sums = data.sums(idx, start, hi);
    let mut usage = Vec::new();
    let mut insights = Vec::new();
    for wanted in ["INPUT", "OUTPUT"] {
        let tokens: u64 = sums
            .iter()
            .filter(|(li, t, _)| !li && *t == wanted)
            .map(|s| s.2)
            .sum();
        if wanted == "INPUT" && agent.split_input_measurement && tokens > 1 {
            usage.push(json!({"usage_type": wanted, "tokens": tokens / 2}));
            usage.push(json!({"usage_type": wanted, "tokens": tokens - tokens / 2}));
        } else {
            usage.push(json!({"usage_type": wanted, "tokens": tokens}));
        }
    }
    for (li, t, tokens) in &sums {
        if *tokens == 0 {
            continue;
        }
        if *li {
            insights.push(json!({"usage_type": t, "tokens": tokens}));
        } else if *t != "INPUT" && *t != "OUTPUT" {
            usage.push(json!({"usage_type": t, "tokens": tokens}));
        }
    }
    let block = |measurements: Vec<Value>| {
        json!({
            "resource_uuid": agent.uuid,
            "start": start.to_rfc3339_opts(SecondsFormat::Secs, true),
            "stop": stop.to_rfc3339_opts(SecondsFormat::Secs, true),
            "measurements": measurements,
        })
    };
    let mut body = json!({ "usage": block(usage) });
    if !agent.omit_log_insights_block {
        body["log_insights_usage"] = block(insights);
    }
    Reply::ok(&body)
}
