//! The ChatBotKit simulator: bots, usage records and per-bot usage (CONTRACTS.md §3).

use std::collections::HashSet;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value, json};
use usage_core::model::ceil_ms;

use crate::data::{BASE_TYPE, CbkBot, CbkRecord};
use crate::faults::CursorEnd;
use crate::server::{Reply, SimState, Vendor, bearer, query_get, query_pairs};

/// Items per page when `take` is absent.
pub const DEFAULT_TAKE: usize = 25;
/// The largest `take` served by default; larger values are clamped (see
/// [`crate::TakeLimit`] for the other behaviours a client must cope with).
pub const MAX_TAKE: usize = 1000;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    for prefix in ["/v1", "/api/v1"] {
        cfg.service(
            web::resource(format!("{prefix}/bot/list"))
                .route(web::get().to(bots))
                .default_service(web::to(not_found)),
        )
        .service(
            web::resource(format!("{prefix}/usage/list"))
                .route(web::get().to(usage_list))
                .default_service(web::to(not_found)),
        )
        .service(
            web::resource(format!("{prefix}/bot/{{botId}}/usage/fetch"))
                .route(web::get().to(bot_usage))
                .default_service(web::to(not_found)),
        );
    }
}

async fn not_found(st: web::Data<SimState>) -> HttpResponse {
    st.serve("unknown", || Vendor::ChatBotKit.error(404, None))
        .await
}

async fn bots(req: HttpRequest, st: web::Data<SimState>) -> HttpResponse {
    st.serve("cbk.bots", || authed(&req, || list_bots(&st, &req)))
        .await
}

async fn usage_list(req: HttpRequest, st: web::Data<SimState>) -> HttpResponse {
    st.serve("cbk.usage_list", || authed(&req, || list_usage(&st, &req)))
        .await
}

async fn bot_usage(req: HttpRequest, st: web::Data<SimState>) -> HttpResponse {
    st.serve("cbk.bot_usage", || {
        authed(&req, || fetch_bot_usage(&st, &req))
    })
    .await
}

fn authed(req: &HttpRequest, f: impl FnOnce() -> Reply) -> Reply {
    if bearer(req) == Some(crate::CBK_TOKEN) {
        f()
    } else {
        Vendor::ChatBotKit.error(401, None)
    }
}

fn bad_request(msg: &str) -> Reply {
    Vendor::ChatBotKit.error(400, Some(msg))
}

/// The common list parameters: `take`, `order` (desc by default) and `cursor`.
struct ListParams<'a> {
    take: usize,
    desc: bool,
    cursor: Option<&'a str>,
}

fn list_params<'a>(st: &SimState, q: &'a [(String, String)]) -> Result<ListParams<'a>, Reply> {
    let limit = st.faults.take_limit();
    let take = match query_get(q, "take") {
        None | Some("") => DEFAULT_TAKE,
        Some(t) => {
            let t = t
                .parse::<usize>()
                .map_err(|_| bad_request("take must be a positive integer"))?;
            if limit.reject && t > limit.max {
                return Err(bad_request(&format!("take must be at most {}", limit.max)));
            }
            t.min(limit.max).max(1)
        }
    };
    let desc = match query_get(q, "order") {
        None | Some("" | "desc") => true,
        Some("asc") => false,
        Some(_) => return Err(bad_request("order must be one of asc, desc")),
    };
    let cursor = query_get(q, "cursor").filter(|c| !c.is_empty());
    Ok(ListParams { take, desc, cursor })
}

/// Returns the first index in `0..len` for which `pred` is false (`pred` must be monotone).
fn partition(len: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Picks one page from candidates `pos(0..len)` (ascending global positions): items after
/// `cursor` in the requested order that pass `keep`; also reports whether more remain.
fn page(
    len: usize,
    pos: impl Fn(usize) -> usize,
    cursor: Option<usize>,
    p: &ListParams<'_>,
    keep: impl Fn(usize) -> bool,
) -> (Vec<usize>, bool) {
    let mut out = Vec::with_capacity(p.take);
    let mut more = false;
    let mut push = |g: usize| {
        if !keep(g) {
            return true;
        }
        if out.len() == p.take {
            more = true;
            return false;
        }
        out.push(g);
        true
    };
    if p.desc {
        let end = cursor.map_or(len, |c| partition(len, |i| pos(i) < c));
        for i in (0..end).rev() {
            if !push(pos(i)) {
                break;
            }
        }
    } else {
        let start = cursor.map_or(0, |c| partition(len, |i| pos(i) <= c));
        for i in start..len {
            if !push(pos(i)) {
                break;
            }
        }
    }
    (out, more)
}

/// Builds `{items, cursor}` following the configured end-of-list behaviour.
fn list_body(
    st: &SimState,
    items: Vec<Value>,
    last_id: Option<&str>,
    more: bool,
    sent: Option<&str>,
) -> Reply {
    let mut body = Map::new();
    body.insert("items".into(), Value::Array(items));
    let cursor = if more {
        last_id.map(str::to_owned)
    } else {
        match st.faults.cursor_end() {
            CursorEnd::Absent => None,
            CursorEnd::Empty => Some(String::new()),
            CursorEnd::Repeat => sent.map(str::to_owned),
            CursorEnd::LastItem => last_id.map(str::to_owned),
        }
    };
    if let Some(c) = cursor {
        body.insert("cursor".into(), c.into());
    }
    Reply::ok(&Value::Object(body))
}

fn bot_json(b: &CbkBot) -> Value {
    json!({
        "id": b.id,
        "name": b.name,
        "description": format!("{} (simulated)", b.name),
        "model": b.model,
        "createdAt": b.created_at,
        "updatedAt": b.updated_at,
        "meta": b.meta,
        "visibility": "private",
        "privacy": false,
        "moderation": false,
    })
}

fn list_bots(st: &SimState, req: &HttpRequest) -> Reply {
    let q = query_pairs(req);
    let p = match list_params(st, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut bots: Vec<&CbkBot> = st.data.chatbotkit.bots().iter().collect();
    bots.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    let cursor = match p.cursor {
        None => None,
        Some(c) => match bots.iter().position(|b| b.id == c) {
            Some(i) => Some(i),
            None => return bad_request("Invalid cursor"),
        },
    };
    let (picked, more) = page(bots.len(), |i| i, cursor, &p, |_| true);
    let last = picked.last().map(|&i| bots[i].id.as_str());
    let items = picked.iter().map(|&i| bot_json(bots[i])).collect();
    list_body(st, items, last, more, p.cursor)
}

fn record_json(r: &CbkRecord) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), r.id.clone().into());
    m.insert("createdAt".into(), r.created_at.into());
    m.insert("updatedAt".into(), r.updated_at.into());
    m.insert("type".into(), r.usage_type.clone().into());
    m.insert("count".into(), r.count.into());
    for (k, v) in [
        ("botId", &r.bot_id),
        ("conversationId", &r.conversation_id),
        ("messageId", &r.message_id),
        ("taskId", &r.task_id),
        ("contactId", &r.contact_id),
        ("datasetId", &r.dataset_id),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), v.clone().into());
        }
    }
    if !r.meta.is_empty() {
        m.insert("meta".into(), json!(r.meta));
    }
    Value::Object(m)
}

fn list_usage(st: &SimState, req: &HttpRequest) -> Reply {
    let data = &st.data.chatbotkit;
    let q = query_pairs(req);
    let p = match list_params(st, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let cursor = match p.cursor {
        None => None,
        Some(c) => match data.position(c) {
            Some(i) => Some(i),
            None => return bad_request("Invalid cursor"),
        },
    };
    let get = |name: &str| query_get(&q, name).filter(|v| !v.is_empty());
    let (conversation, contact, usage_type) =
        (get("conversationId"), get("contactId"), get("type"));
    // `meta[key]=value` (deepObject, as the spec and the Go SDK send) or `meta.key=value` (Node SDK).
    let meta: Vec<(&str, &str)> = q
        .iter()
        .filter_map(|(k, v)| {
            let key = k
                .strip_prefix("meta[")
                .and_then(|k| k.strip_suffix(']'))
                .or_else(|| k.strip_prefix("meta."))?;
            Some((key, v.as_str()))
        })
        .collect();
    let records = data.records();
    let keep = |g: usize| {
        let r = &records[g];
        conversation.is_none_or(|c| r.conversation_id.as_deref() == Some(c))
            && contact.is_none_or(|c| r.contact_id.as_deref() == Some(c))
            && usage_type.is_none_or(|t| r.usage_type == t)
            && meta
                .iter()
                .all(|(k, v)| r.meta.get(*k).is_some_and(|m| m == v))
    };
    let (picked, more) = match get("botId") {
        Some(bot) => {
            let pos = data.bot_positions(bot).unwrap_or(&[]);
            page(pos.len(), |i| pos[i] as usize, cursor, &p, keep)
        }
        None => page(records.len(), |i| i, cursor, &p, keep),
    };
    let last = picked.last().map(|&g| records[g].id.as_str());
    let items = picked.iter().map(|&g| record_json(&records[g])).collect();
    list_body(st, items, last, more, p.cursor)
}

/// Parses an ISO 8601 instant: RFC 3339, a zone-less date-time (UTC) or a date (UTC midnight).
fn parse_iso(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
}

fn fetch_bot_usage(st: &SimState, req: &HttpRequest) -> Reply {
    let data = &st.data.chatbotkit;
    let bot = req.match_info().get("botId").unwrap_or_default();
    let q = query_pairs(req);
    let bound = |name: &str| -> Result<Option<DateTime<Utc>>, Reply> {
        match query_get(&q, name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_iso(v)
                .map(Some)
                .ok_or_else(|| bad_request(&format!("Invalid {name} date: expected ISO 8601"))),
        }
    };
    let (from, to) = match (bound("from"), bound("to")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if data.bot_positions(bot).is_none() {
        return Vendor::ChatBotKit.error(404, Some("Bot not found"));
    }
    // `from <= createdAt <= to`, with `to` inclusive at millisecond precision.
    let from_ms = from.map_or(i64::MIN, ceil_ms);
    let to_ms = to.map_or(i64::MAX, |t| t.timestamp_millis());
    let records = data.records();
    let mut tokens = 0u64;
    let mut messages = 0u64;
    let mut conversations = HashSet::new();
    for &g in data.bot_range(bot, from_ms, to_ms) {
        let r = &records[g as usize];
        if r.usage_type == BASE_TYPE {
            tokens += r.count;
        }
        if r.message_id.is_some() {
            messages += 1;
        }
        if let Some(c) = &r.conversation_id {
            conversations.insert(c.as_str());
        }
    }
    Reply::ok(&json!({
        "tokens": tokens,
        "conversations": conversations.len(),
        "messages": messages,
    }))
}
