//! The Kibana Agent Builder simulator: list agents and agent consumption (CONTRACTS.md §2).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, SecondsFormat};
use serde_json::{Map, Value, json};

use crate::data::KibanaConversation;
use crate::data::kibana::{AgentData, SortField};
use crate::server::{Reply, SimState, Vendor};

const DEFAULT_SPACE: &str = "default";
const KNOWN_KEYS: &[&str] = &[
    "size",
    "sort_field",
    "sort_order",
    "search_after",
    "search",
    "usernames",
    "has_warnings",
];

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    // Kibana's default `server.maxPayload` is 1 MB (actix would stop at 256 kB).
    cfg.app_data(web::PayloadConfig::new(1 << 20));
    for prefix in ["", "/s/{space}"] {
        cfg.service(
            web::resource(format!("{prefix}/api/agent_builder/agents"))
                .route(web::get().to(agents))
                .default_service(web::to(not_found)),
        )
        .service(
            web::resource(format!(
                "{prefix}/api/agent_builder/agents/{{agent_id}}/consumption"
            ))
            .route(web::post().to(consumption))
            .default_service(web::to(not_found)),
        );
    }
}

async fn not_found(st: web::Data<SimState>) -> HttpResponse {
    st.serve("unknown", || Vendor::Kibana.error(404, None))
        .await
}

async fn agents(req: HttpRequest, st: web::Data<SimState>) -> HttpResponse {
    st.serve("kibana.agents", || list_agents(&st, &req)).await
}

async fn consumption(req: HttpRequest, body: web::Bytes, st: web::Data<SimState>) -> HttpResponse {
    st.serve("kibana.consumption", || agent_consumption(&st, &req, &body))
        .await
}

/// Encodes bytes as standard base64 with padding.
pub(crate) fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Accepts `ApiKey <KIBANA_API_KEY>` and `Basic base64(elastic:<KIBANA_PASSWORD>)`.
fn authorized(req: &HttpRequest) -> bool {
    let Some(v) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, cred)) = v.trim().split_once(' ') else {
        return false;
    };
    let cred = cred.trim();
    if scheme.eq_ignore_ascii_case("apikey") {
        cred == crate::KIBANA_API_KEY
    } else if scheme.eq_ignore_ascii_case("basic") {
        cred == base64(format!("{}:{}", crate::KIBANA_USERNAME, crate::KIBANA_PASSWORD).as_bytes())
    } else {
        false
    }
}

fn unauthorized() -> Reply {
    Vendor::Kibana
        .error(401, None)
        .header("www-authenticate", "Basic realm=\"kibana\"")
}

/// Resolves the space of a request (`default` without the `/s/{space}` prefix) and checks
/// that it exists.
fn space_of<'a>(
    st: &'a SimState,
    req: &HttpRequest,
) -> Result<&'a crate::data::kibana::Space, Reply> {
    let id = req.match_info().get("space").unwrap_or(DEFAULT_SPACE);
    st.data.kibana.space(id).ok_or_else(|| {
        Vendor::Kibana.error(404, Some(&format!("Saved object [space/{id}] not found")))
    })
}

fn list_agents(st: &SimState, req: &HttpRequest) -> Reply {
    if !authorized(req) {
        return unauthorized();
    }
    let space = match space_of(st, req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let results: Vec<Value> = space.agents.iter().map(agent_json).collect();
    Reply::ok(&json!({ "results": results }))
}

fn agent_json(a: &AgentData) -> Value {
    let builtin = a.agent.id == "elastic-ai-agent";
    let mut v = json!({
        "id": a.agent.id,
        "type": "chat",
        "name": a.agent.name,
        "description": a.description,
        "access_control": null,
        "permissions": {"can_edit": !builtin, "can_change_access_control": !builtin},
        "configuration": {"tools": [{"tool_ids": [
            "platform.core.search",
            "platform.core.list_indices",
            "platform.core.get_index_mapping",
            "platform.core.get_document_by_id"
        ]}]},
    });
    if !builtin {
        v["labels"] = json!(["sim"]);
        v["avatar_color"] = json!("#BFDBFF");
        v["configuration"]["instructions"] = json!(format!("You are {}.", a.agent.name));
    }
    v
}

/// The validated consumption request body.
#[derive(Debug)]
struct Params {
    size: usize,
    field: SortField,
    desc: bool,
    search_after: Option<Vec<Value>>,
    search: Option<String>,
    usernames: Option<BTreeSet<String>>,
    has_warnings: Option<bool>,
}

/// Names a JSON value's type as `@kbn/config-schema` messages do.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "Array",
        Value::Object(_) => "Object",
    }
}

fn expected(key: &str, ty: &str, v: &Value) -> String {
    format!(
        "[request body.{key}]: expected value of type [{ty}] but got [{}]",
        type_name(v)
    )
}

fn one_of(key: &str, v: &Value, allowed: &[&str]) -> Result<String, String> {
    if let Value::String(s) = v
        && allowed.contains(&s.as_str())
    {
        return Ok(s.clone());
    }
    let mut msg = format!("[request body.{key}]: types that failed validation:");
    for (i, a) in allowed.iter().enumerate() {
        let _ = write!(
            msg,
            "\n- [request body.{key}.{i}]: expected value to equal [{a}]"
        );
    }
    Err(msg)
}

fn array_of<'a>(key: &str, v: &'a Value) -> Result<&'a Vec<Value>, String> {
    match v {
        Value::Array(a) if a.len() > 10_000 => Err(format!(
            "[request body.{key}]: array size is [{}], but cannot be greater than [10000]",
            a.len()
        )),
        Value::Array(a) => Ok(a),
        other => Err(expected(key, "Array", other)),
    }
}

/// Validates the body like the route's `@kbn/config-schema` object (CONTRACTS.md §2.2).
fn validate(body: &[u8]) -> Result<Params, String> {
    let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|_| "Invalid request payload JSON format".to_owned())?
    };
    let Value::Object(obj) = v else {
        return Err(format!(
            "[request body]: expected a plain object value, but found [{}] instead.",
            type_name(&v)
        ));
    };
    let size = match obj.get("size") {
        None => 25.0,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(s @ Value::String(text)) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && !text.trim().is_empty())
            .ok_or_else(|| expected("size", "number", s))?,
        Some(other) => return Err(expected("size", "number", other)),
    };
    if size < 1.0 {
        return Err("[request body.size]: Value must be equal to or greater than [1].".to_owned());
    }
    if size > 100.0 {
        return Err("[request body.size]: Value must be equal to or lower than [100].".to_owned());
    }
    let field = match obj.get("sort_field") {
        None => SortField::UpdatedAt,
        Some(v) => match one_of(
            "sort_field",
            v,
            &["updated_at", "total_tokens", "round_count"],
        )?
        .as_str()
        {
            "total_tokens" => SortField::TotalTokens,
            "round_count" => SortField::RoundCount,
            _ => SortField::UpdatedAt,
        },
    };
    let desc = match obj.get("sort_order") {
        None => true,
        Some(v) => one_of("sort_order", v, &["asc", "desc"])? == "desc",
    };
    let search_after = obj
        .get("search_after")
        .map(|v| array_of("search_after", v).cloned())
        .transpose()?;
    let search = match obj.get("search") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(expected("search", "string", other)),
    };
    let usernames = match obj.get("usernames") {
        None => None,
        Some(v) => {
            let mut set = BTreeSet::new();
            for (i, u) in array_of("usernames", v)?.iter().enumerate() {
                match u {
                    Value::String(s) => {
                        set.insert(s.clone());
                    }
                    other => return Err(expected(&format!("usernames.{i}"), "string", other)),
                }
            }
            Some(set)
        }
    };
    let has_warnings = match obj.get("has_warnings") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) if s == "true" => Some(true),
        Some(Value::String(s)) if s == "false" => Some(false),
        Some(other) => return Err(expected("has_warnings", "boolean", other)),
    };
    if let Some(k) = obj.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "[request body.{k}]: definition for this key is missing"
        ));
    }
    Ok(Params {
        size: size as usize,
        field,
        desc,
        search_after,
        search,
        usernames,
        has_warnings,
    })
}

/// Reads one `search_after` value as a number (numbers, numeric strings and ISO dates).
fn sort_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.parse::<i64>().ok().or_else(|| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp_millis())
        }),
        _ => None,
    }
}

fn conversation_json(c: &KibanaConversation) -> Value {
    let mut user = Map::new();
    if let Some(id) = &c.user_id {
        user.insert("id".into(), id.clone().into());
    }
    user.insert("username".into(), c.username.clone().into());
    let warnings: Vec<Value> = c
        .warnings
        .iter()
        .map(|w| json!({"type": "high_input_tokens", "round_id": w.round_id, "input_tokens": w.input_tokens}))
        .collect();
    json!({
        "conversation_id": c.id,
        "title": c.title,
        "user": user,
        "created_at": c.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "updated_at": c.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "token_usage": {
            "input_tokens": c.input_tokens,
            "output_tokens": c.output_tokens,
            "total_tokens": c.total_tokens(),
        },
        "round_count": c.round_count,
        "llm_calls": c.llm_calls,
        "warnings": warnings,
    })
}

fn agent_consumption(st: &SimState, req: &HttpRequest, body: &[u8]) -> Reply {
    if !authorized(req) {
        return unauthorized();
    }
    let headers = req.headers();
    if !headers.contains_key("kbn-xsrf") && !headers.contains_key("kbn-version") {
        return Vendor::Kibana.error(400, Some("Request must contain a kbn-xsrf header."));
    }
    let space = match space_of(st, req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let p = match validate(body) {
        Ok(p) => p,
        Err(msg) => return Vendor::Kibana.error(400, Some(&msg)),
    };
    let agent_id = req.match_info().get("agent_id").unwrap_or_default();
    let Some(agent) = space.agents.iter().find(|a| a.agent.id == agent_id) else {
        // The agent id is not validated: an unknown agent simply has no conversations.
        return Reply::ok(&json!({
            "results": [],
            "total": 0,
            "aggregations": {"usernames": [], "total_with_warnings": 0},
        }));
    };
    // With a clock, the view as of it (with its own sort orders); without, the precomputed one.
    let as_of;
    let agent = match st.clock.get() {
        None => agent,
        Some(t) => {
            as_of = agent.as_of(t);
            &as_of
        }
    };
    let convs = &agent.conversations;
    // Each order ascends by (key, created_at), with the key negated for `desc`.
    let signed = |k: i64| if p.desc { -k } else { k };
    let keyed = |i: u32| {
        let c = &convs[i as usize];
        (signed(p.field.key(c)), c.created_at.timestamp_millis())
    };
    let search = p
        .search
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::to_lowercase);
    let matches = |c: &KibanaConversation| {
        p.usernames
            .as_ref()
            .is_none_or(|u| u.is_empty() || u.contains(&c.username))
            && p.has_warnings.is_none_or(|h| h != c.warnings.is_empty())
            && search
                .as_ref()
                .is_none_or(|s| c.title.to_lowercase().contains(s.as_str()))
    };
    let order = agent.order(p.field, p.desc);
    let start = match &p.search_after {
        None => 0,
        Some(sa) => {
            if sa.len() != 2 {
                return Vendor::Kibana.error(
                    500,
                    Some(&format!(
                        "search_after has {} value(s) but sort has 2.",
                        sa.len()
                    )),
                );
            }
            let (Some(k), Some(created)) = (sort_value(&sa[0]), sort_value(&sa[1])) else {
                return Vendor::Kibana.error(
                    500,
                    Some("Failed to parse search_after value for the sort fields"),
                );
            };
            let cursor = (signed(k), created);
            // Skip everything up to and including the cursor.
            order.partition_point(|&i| keyed(i) <= cursor)
        }
    };
    let filtered = p.usernames.as_ref().is_some_and(|u| !u.is_empty())
        || p.has_warnings.is_some()
        || search.is_some();
    let total = if filtered {
        convs.iter().filter(|c| matches(c)).count()
    } else {
        convs.len()
    };
    let hits: Vec<&KibanaConversation> = order[start..]
        .iter()
        .map(|&i| &convs[i as usize])
        .filter(|c| matches(c))
        .take(p.size)
        .collect();
    let mut body = json!({
        "results": hits.iter().map(|c| conversation_json(c)).collect::<Vec<_>>(),
        "total": total,
        "aggregations": {"usernames": agent.usernames, "total_with_warnings": 0},
    });
    if let Some(last) = hits.last() {
        body["search_after"] = json!([p.field.key(last), last.created_at.timestamp_millis()]);
    }
    Reply::ok(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"elastic:changeme"), "ZWxhc3RpYzpjaGFuZ2VtZQ==");
    }
}
