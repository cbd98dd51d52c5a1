//! Scenario 4's same-run calibration: the vendor pages the gateway reads for the cold query,
//! fetched by a bare `reqwest` client from the same simulators and decoded with `serde_json`,
//! on one thread of the benchmark with a single-threaded runtime (the shape of one actix
//! worker). Its CPU time is that thread's, from `/proc/thread-self/schedstat`; the simulators
//! answer on other threads and are not counted, as they are not in the gateway's figure.
//!
//! The same requests as the providers send: Kibana's consumption pages of 100 (newest first,
//! `search_after` from each page, until a short page), ChatBotKit's bot list and its
//! `type=BASE` usage records in pages of 1000 (`cursor` from each page, until an empty page or
//! no new cursor). Each page is decoded into a [`serde_json::Value`]: all of its JSON, as the
//! gateway's providers decode every record (into their own types, without building a tree).

use std::time::Duration;

use serde_json::{Value, json};

/// Where the pages come from.
#[derive(Debug, Clone)]
pub struct Pages {
    /// The Kibana simulator.
    pub kibana_base: String,
    /// The agent whose conversations the cold query reads.
    pub agent: String,
    /// The ChatBotKit simulator.
    pub cbk_base: String,
    /// `take` of ChatBotKit's list requests (the provider's `page_size`).
    pub take: u32,
}

/// What one calibration run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calibrated {
    /// CPU time of the thread that fetched and decoded.
    pub cpu: Duration,
    /// Vendor requests sent.
    pub requests: u64,
    /// Kibana conversations read.
    pub conversations: u64,
    /// ChatBotKit records read.
    pub records: u64,
}

/// Runs the calibration once on a fresh thread with a fresh runtime and client (fresh
/// connections, as a freshly started gateway has). Blocks until done.
pub fn run(pages: &Pages) -> Result<Calibrated, String> {
    let pages = pages.clone();
    std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("calibration runtime: {e}"))?;
            let client = crate::load::client()?;
            let before = crate::procfs::thread_cpu()
                .map_err(|e| format!("cannot read the calibration thread's CPU time: {e}"))?;
            let mut out = runtime.block_on(fetch_all(&client, &pages))?;
            out.cpu = crate::procfs::thread_cpu()
                .map_err(|e| format!("cannot read the calibration thread's CPU time: {e}"))?
                .saturating_sub(before);
            Ok(out)
        })
        .join()
        .unwrap_or_else(|_| Err("the calibration thread panicked".into()))
    })
}

async fn get_json(req: reqwest::RequestBuilder) -> Result<Value, String> {
    let r = req.send().await.map_err(|e| format!("calibration: {e}"))?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| format!("calibration: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "calibration: {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("calibration: {e}"))
}

/// Kibana's and ChatBotKit's pages, one after the other (the CPU time, not the wall time, is
/// the figure).
async fn fetch_all(client: &reqwest::Client, p: &Pages) -> Result<Calibrated, String> {
    let mut out = Calibrated {
        cpu: Duration::ZERO,
        requests: 0,
        conversations: 0,
        records: 0,
    };
    // Kibana: pages of 100 until a short one.
    let url = format!(
        "{}/api/agent_builder/agents/{}/consumption",
        p.kibana_base, p.agent
    );
    let mut cursor: Option<Value> = None;
    loop {
        let mut body = json!({"size": 100, "sort_field": "updated_at", "sort_order": "desc"});
        if let Some(c) = cursor.take() {
            body["search_after"] = c;
        }
        let page = get_json(
            client
                .post(&url)
                .header(
                    "authorization",
                    format!("ApiKey {}", usage_sim::KIBANA_API_KEY),
                )
                .header("kbn-xsrf", "true")
                .header("elastic-api-version", "2023-10-31")
                .header("accept", "application/json")
                .json(&body),
        )
        .await?;
        out.requests += 1;
        let n = page
            .get("results")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        out.conversations += n as u64;
        if n < 100 {
            break;
        }
        cursor = Some(
            page.get("search_after")
                .cloned()
                .ok_or("calibration: a full Kibana page without search_after")?,
        );
    }
    // ChatBotKit: the bot list, then the records.
    for (path, usage_type, counts) in [
        ("/v1/bot/list", None, false),
        ("/v1/usage/list", Some(usage_sim::BASE_TYPE), true),
    ] {
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("take", p.take.to_string()), ("order", "desc".into())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            if let Some(t) = usage_type {
                query.push(("type", t.into()));
            }
            let page = get_json(
                client
                    .get(format!("{}{path}", p.cbk_base))
                    .query(&query)
                    .bearer_auth(usage_sim::CBK_TOKEN)
                    .header("accept", "application/json"),
            )
            .await?;
            out.requests += 1;
            let n = page
                .get("items")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if counts {
                out.records += n as u64;
            }
            let next = page
                .get("cursor")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .map(str::to_owned);
            if n == 0 || next.is_none() || next == cursor {
                break;
            }
            cursor = next;
        }
    }
    Ok(out)
}
