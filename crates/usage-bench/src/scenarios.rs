//! The five scenarios of issue 9. Each starts the simulators it needs in-process, a gateway
//! subprocess on a generated config, drives its load and returns its table lines.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderName, HeaderValue};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::Value;
use usage_sim::{DataSpec, Dataset, DoOptions, SimHandle, TruthFilter};

use crate::baseline::{self, Canned};
use crate::calibration;
use crate::gateway::{ConfigSpec, Gateway, SourceTable, free_addr};
use crate::load::{self, Answer, Bound};
use crate::nginx::{self, Nginx};
use crate::report::{self, Relative, Row, Target};
use crate::stats::{Samples, Summary, mib, ms, signed_ms};
use crate::wrk::{Run, Wrk};

const MIB: u64 = 1024 * 1024;

/// What every scenario shares.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The release `usage-gateway` binary.
    pub bin: PathBuf,
    /// Where configs and gateway logs go.
    pub dir: PathBuf,
    /// The JWT secret of this run.
    pub secret: String,
    /// Relative noise margin.
    pub margin: f64,
    /// Actix workers of the gateway and of the baseline.
    pub workers: usize,
    /// Length of each throughput run.
    pub duration: Duration,
    /// The load generator of scenario 1 (`None` when scenario 1 is not run).
    pub wrk: Option<Wrk>,
    /// The nginx binary of scenario 1's second reference (`None` when scenario 1 is not run).
    pub nginx: Option<PathBuf>,
    /// The client for control requests.
    pub client: reqwest::Client,
    /// `RUST_LOG` of the gateway (`info` as deployed).
    pub log_filter: String,
}

pub fn io_err(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Formats an instant as RFC 3339 with a `Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Scenario 2's range for request `i`: the day starting `i` minutes after `from`.
fn day_after(from: DateTime<Utc>, i: u64) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = from + chrono::Duration::minutes(i64::try_from(i).unwrap_or(i64::MAX));
    (start, start + chrono::Duration::days(1))
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// Reports whether an answer is a `200` whose JSON says `"complete": true`.
pub fn complete(a: &Answer) -> bool {
    a.status.is_success()
        && serde_json::from_slice::<Value>(&a.body)
            .ok()
            .and_then(|v| v.get("complete").and_then(Value::as_bool))
            == Some(true)
}

/// Returns `sources[].upstream_requests` of a `/v1/usage` body by source name.
pub fn upstream_requests(body: &[u8]) -> Option<BTreeMap<String, u64>> {
    numbers_by(body, "sources", "source", "upstream_requests")
}

/// Returns `totals[]` of a `/v1/usage` body as `unit → total_tokens`.
pub fn totals(body: &[u8]) -> Option<BTreeMap<String, u64>> {
    numbers_by(body, "totals", "unit", "total_tokens")
}

/// Reads the array `list` of a JSON body as `item[key] → item[number]`; `None` when any item
/// lacks either.
fn numbers_by(body: &[u8], list: &str, key: &str, number: &str) -> Option<BTreeMap<String, u64>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get(list)?
        .as_array()?
        .iter()
        .map(|item| {
            Some((
                item.get(key)?.as_str()?.to_owned(),
                item.get(number)?.as_u64()?,
            ))
        })
        .collect()
}

async fn fetch(client: &reqwest::Client, url: &str, auth: &str) -> Result<Answer, String> {
    let r = client
        .get(url)
        .header("authorization", auth)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
    let a = Answer { status, body };
    if !complete(&a) {
        return Err(format!(
            "GET {url} answered {status} ({headers:?}): {}",
            String::from_utf8_lossy(&a.body)
        ));
    }
    Ok(a)
}

pub fn do_source(s: &SimHandle) -> SourceTable {
    SourceTable::new("do", "digitalocean", &s.base_url).string("token", usage_sim::DO_TOKEN)
}

fn kibana_source(s: &SimHandle) -> SourceTable {
    SourceTable::new("kibana", "kibana", &s.base_url).string("api_key", usage_sim::KIBANA_API_KEY)
}

pub fn cbk_source(s: &SimHandle) -> SourceTable {
    SourceTable::new("cbk", "chatbotkit", &s.base_url).string("token", usage_sim::CBK_TOKEN)
}

/// The uuids of the data set's DigitalOcean agents.
pub fn do_agents(data: &Dataset) -> Vec<String> {
    data.digitalocean
        .agents()
        .iter()
        .map(|a| a.uuid.clone())
        .collect()
}

/// One source per simulator, each with its defaults.
fn all_sources(sims: &usage_sim::Simulators) -> Vec<SourceTable> {
    vec![
        do_source(&sims.digitalocean),
        kibana_source(&sims.kibana),
        cbk_source(&sims.chatbotkit),
    ]
}

impl Ctx {
    /// A config on a free port with this run's workers, a 120 s request timeout, the default
    /// `max_buckets` and no store.
    pub fn config(
        &self,
        cache_max_bytes: u64,
        sources: Vec<SourceTable>,
    ) -> Result<ConfigSpec, String> {
        Ok(ConfigSpec {
            listen: free_addr().map_err(io_err("no free port"))?,
            workers: self.workers,
            cache_max_bytes,
            request_timeout_secs: 120,
            max_buckets: 2000,
            store: None,
            sources,
        })
    }

    /// Starts a gateway on `spec` and mints its caller's `Authorization` value.
    pub async fn gateway(
        &self,
        name: &str,
        spec: &ConfigSpec,
    ) -> Result<(Gateway, String), String> {
        let gw = Gateway::start(
            &self.bin,
            &self.dir,
            name,
            spec,
            &self.secret,
            &self.log_filter,
            &self.client,
        )
        .await?;
        let token = gw.token(&self.bin, &self.secret)?;
        Ok((gw, format!("Bearer {token}")))
    }

    async fn load(&self, url: &str, auth: &str, duration: Duration) -> Result<Summary, String> {
        let wrk = self
            .wrk
            .clone()
            .ok_or("scenario 1 needs wrk, which was not set up")?;
        let url = url.to_owned();
        let headers = vec![format!("Authorization: {auth}")];
        let threads = self.workers;
        tokio::task::spawn_blocking(move || {
            wrk.run(&Run {
                url: &url,
                connections: 32,
                threads,
                duration,
                headers: &headers,
            })
        })
        .await
        .map_err(|e| format!("wrk task: {e}"))?
    }
}

/// Scenario 1: warm `GET /v1/usage` over three sources (about 5 KB, JWT verified on every
/// request) against two references answering the same bytes in the same rounds: a bare actix
/// handler, and nginx serving them from its `proxy_cache`. Each figure is the median of five
/// rounds' ratios.
pub async fn cache_hit(ctx: &Ctx) -> Result<Vec<Row>, String> {
    let now = Utc::now();
    let sims = usage_sim::start_all(&DataSpec::small(now))
        .await
        .map_err(io_err("simulators"))?;
    let spec = ctx.config(64 * MIB, all_sources(&sims))?;
    let (gw, auth) = ctx.gateway("s1-cache-hit", &spec).await?;
    let today = now.date_naive();
    let query = format!(
        "/v1/usage?start={}&end={}&bucket=week&group_by=source,agent",
        today - chrono::Days::new(7),
        today
    );
    let url = format!("{}{query}", gw.base);
    let cold = fetch(&ctx.client, &url, &auth).await?;
    // The warm answer, headers included, is what the references serve.
    let warm = ctx
        .client
        .get(&url)
        .header("authorization", &auth)
        .send()
        .await
        .map_err(|e| format!("warm GET: {e}"))?;
    let headers: Vec<(HeaderName, HeaderValue)> = warm
        .headers()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "content-length" | "date"))
        .filter_map(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.as_str().as_bytes()).ok()?,
                HeaderValue::from_bytes(v.as_bytes()).ok()?,
            ))
        })
        .collect();
    let body = warm.bytes().await.map_err(|e| format!("warm GET: {e}"))?;
    if body != cold.body {
        return Err(
            "the warm answer differs from the cold one: the response cache did not answer".into(),
        );
    }
    let base = baseline::start(
        ctx.workers,
        Canned {
            headers,
            body: body.clone(),
        },
    )
    .map_err(io_err("baseline"))?;
    let base_url = format!("{}/v1/usage", base.base);
    let nginx_bin = ctx
        .nginx
        .clone()
        .ok_or("scenario 1 needs nginx, which was not set up")?;
    let nginx = Nginx::start(
        &nginx_bin,
        &ctx.dir.join("s1-nginx"),
        base.addr,
        ctx.workers,
        &ctx.client,
    )
    .await?;
    // The gateway's path and query: nginx keys its cache by them, and the first request fills
    // it from the origin.
    let nginx_url = format!("{}{query}", nginx.base);
    for (name, u) in [("baseline", &base_url), ("nginx", &nginx_url)] {
        let same = ctx
            .client
            .get(u.as_str())
            .header("authorization", &auth)
            .send()
            .await
            .map_err(|e| format!("{name} GET: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("{name} GET: {e}"))?;
        if same != body {
            return Err(format!("{name} does not answer the gateway's bytes"));
        }
    }
    let lookups = gw
        .metric(&ctx.client, "usage_gateway_cache_lookups_total", "")
        .await?;
    println!(
        "  body {} bytes; 1 s warm-up each, then {ROUNDS} rounds of gateway, baseline and nginx runs of {} s (the order rotates)",
        body.len(),
        ctx.duration.as_secs_f64()
    );
    for u in [&url, &base_url, &nginx_url] {
        ctx.load(u, &auth, Duration::from_secs(1)).await?;
    }
    let origin_before = base.origin_requests();
    let me = std::process::id();
    let ticks = crate::procfs::clock_ticks_per_second();
    let own_cpu = || crate::procfs::cpu_sample(me, ticks).map_err(io_err("own CPU time"));
    let mut cpu = [Duration::ZERO; 3];
    let mut rounds: Vec<[Summary; 3]> = Vec::new();
    for round in 0..ROUNDS {
        let mut runs: [Summary; 3] = Default::default();
        // Round r starts with the gateway, the baseline or nginx in turn.
        for k in 0..3 {
            let who = (round + k) % 3;
            let (run, used) = match who {
                GATEWAY => {
                    let c = gw.cpu()?;
                    let run = ctx.load(&url, &auth, ctx.duration).await?;
                    (run, gw.cpu()?.since(&c))
                }
                BASELINE => {
                    // The baseline runs in this process, where the simulators sit idle
                    // meanwhile.
                    let c = own_cpu()?;
                    let run = ctx.load(&base_url, &auth, ctx.duration).await?;
                    (run, own_cpu()?.since(&c))
                }
                _ => {
                    let c = nginx.cpu()?;
                    let run = ctx.load(&nginx_url, &auth, ctx.duration).await?;
                    (run, nginx::cpu_since(&nginx.cpu()?, &c))
                }
            };
            cpu[who] += used;
            runs[who] = run;
        }
        let [g, b, n] = &runs;
        println!(
            "  round {}: gateway {:>6.0} req/s (p50 {}, p99 {}), baseline {:>6.0} (p50 {}, p99 {}), nginx {:>6.0} (p50 {}, p99 {}): {:.2} x baseline, {:.2} x nginx",
            round + 1,
            g.rps,
            ms(g.p50),
            ms(g.p99),
            b.rps,
            ms(b.p50),
            ms(b.p99),
            n.rps,
            ms(n.p50),
            ms(n.p99),
            report::ratio(g.rps, b.rps),
            report::ratio(g.rps, n.rps),
        );
        rounds.push(runs);
    }
    let origin_during = base.origin_requests() - origin_before;
    let lookups_after = gw
        .metric(&ctx.client, "usage_gateway_cache_lookups_total", "")
        .await?;
    nginx.stop();
    base.stop().await;
    gw.stop();
    sims.stop().await;

    let served = |who: usize| -> u64 { rounds.iter().map(|r| r[who].requests).sum() };
    let per_request = |who: usize| cpu[who].as_secs_f64() * 1e6 / served(who).max(1) as f64;
    let (g_cpu, b_cpu, n_cpu) = (
        per_request(GATEWAY),
        per_request(BASELINE),
        per_request(NGINX),
    );
    println!(
        "  CPU per request: gateway {g_cpu:.1} us, baseline {b_cpu:.1} us, nginx {n_cpu:.1} us"
    );
    // The round whose ratio is the median, and every round's ratio.
    let median_round = |reference: usize| -> (f64, String, [Summary; 3]) {
        let ratios: Vec<f64> = rounds
            .iter()
            .map(|r| report::ratio(r[GATEWAY].rps, r[reference].rps))
            .collect();
        let m = report::median(&ratios);
        let at = ratios
            .iter()
            .position(|r| r.total_cmp(&m).is_eq())
            .unwrap_or(0);
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let all: Vec<String> = sorted.iter().map(|r| format!("{r:.2}")).collect();
        (m, all.join(", "), rounds[at].clone())
    };
    let (vs_base, all_base, at_base) = median_round(BASELINE);
    let (vs_nginx, all_nginx, at_nginx) = median_round(NGINX);
    let extra_lookups = (lookups_after - lookups).max(0.0);
    let rps_base = Relative::ratio_at_least(CACHE_HIT_VS_BASELINE);
    let rps_nginx = Relative::ratio_at_least(CACHE_HIT_VS_NGINX);
    let cpu_base = Relative::ratio_at_most(CACHE_HIT_CPU_VS_BASELINE);
    Ok(vec![
        Row::info(
            "1 cache hit: baseline actix handler, same bytes",
            Some(at_base[BASELINE].clone()),
            format!("{} B body; CPU {b_cpu:.1} us per request", body.len()),
        ),
        Row::info(
            "1 cache hit: nginx proxy_cache, same bytes",
            Some(at_nginx[NGINX].clone()),
            format!(
                "from its cache ({origin_during} requests reached the origin); CPU {n_cpu:.1} us per request"
            ),
        ),
        Row::judged(
            "1 cache hit: gateway vs baseline, JWT verified per request",
            Some(at_base[GATEWAY].clone()),
            (
                format!("{vs_base:.2} x baseline req/s (median of {all_base})"),
                vs_base,
            ),
            (
                format!(">= {CACHE_HIT_VS_BASELINE} x baseline"),
                rps_base.target,
            ),
            ctx.margin,
        ),
        Row::relative(
            "1 cache hit (same runs): CPU per request",
            None,
            format!(
                "gateway {g_cpu:.1} us, baseline {b_cpu:.1} us: {:.2} x",
                cpu_base.figure(g_cpu, b_cpu)
            ),
            (g_cpu, b_cpu),
            (
                format!("<= {CACHE_HIT_CPU_VS_BASELINE} x baseline"),
                cpu_base,
            ),
            ctx.margin,
        ),
        Row::judged(
            "1 cache hit: gateway vs nginx proxy_cache",
            Some(at_nginx[GATEWAY].clone()),
            (
                format!("{vs_nginx:.2} x nginx req/s (median of {all_nginx})"),
                vs_nginx,
            ),
            (format!(">= {CACHE_HIT_VS_NGINX} x nginx"), rps_nginx.target),
            ctx.margin,
        ),
        Row::judged(
            "1 nginx reference: requests that reached its origin",
            None,
            (
                format!("{origin_during} in {} requests", served(NGINX)),
                origin_during as f64,
            ),
            ("0 (all from its cache)".into(), Target::Exactly(0.0)),
            ctx.margin,
        ),
        Row::judged(
            "1 repeated query: window-cache lookups",
            None,
            (
                format!(
                    "{extra_lookups:.0} (no re-aggregation in {} requests)",
                    served(GATEWAY)
                ),
                extra_lookups,
            ),
            ("0".into(), Target::Exactly(0.0)),
            ctx.margin,
        ),
    ])
}

/// Rounds of gateway, baseline and nginx runs in scenario 1.
const ROUNDS: usize = 5;
/// Indexes of scenario 1's three servers in a round.
const GATEWAY: usize = 0;
const BASELINE: usize = 1;
const NGINX: usize = 2;
/// Scenario 1 (issue 20): gateway requests/s >= this x the bare actix baseline's.
const CACHE_HIT_VS_BASELINE: f64 = 0.9;
/// Scenario 1 (issue 20): gateway CPU per request <= this x the baseline's.
const CACHE_HIT_CPU_VS_BASELINE: f64 = 1.25;
/// Scenario 1 (issue 20): gateway requests/s >= this x nginx's (not slower than nginx).
const CACHE_HIT_VS_NGINX: f64 = 1.0;

/// Scenario 2: three sources at 50 ms, 32 concurrent requests, each with its own query range,
/// so no request is answered from the gateway's caches or joined to another one's upstream call;
/// judged against the same vendor calls sent at once by a plain client, in rounds that
/// alternate with the gateway's.
pub async fn fan_out(ctx: &Ctx) -> Result<Vec<Row>, String> {
    const LATENCY: Duration = Duration::from_millis(50);
    let now = Utc::now();
    let data = Arc::new(Dataset::generate(&DataSpec::small(now)));
    // The simulator's per-token budget (250/min) is lifted: this scenario sends ~100x that.
    let unlimited = DoOptions {
        rate_limit_per_minute: 0,
    };
    let do_sim = usage_sim::start_digitalocean(data.clone(), unlimited, None)
        .await
        .map_err(io_err("DigitalOcean simulator"))?;
    let kb_sim = usage_sim::start_kibana(data.clone(), None)
        .await
        .map_err(io_err("Kibana simulator"))?;
    let cbk_sim = usage_sim::start_chatbotkit(data.clone(), None)
        .await
        .map_err(io_err("ChatBotKit simulator"))?;
    for s in [&do_sim, &kb_sim, &cbk_sim] {
        s.faults().set_latency(LATENCY, Duration::ZERO);
    }
    let bots: Vec<String> = data
        .chatbotkit
        .bots()
        .iter()
        .map(|b| b.id.clone())
        .collect();
    let spec = ctx.config(
        64 * MIB,
        vec![
            // The sources' own budgets and concurrency caps are raised above the offered load
            // (32 requests x 4 agents, or x 3 bots, in flight), so the figure is the
            // gateway's, not a queue.
            do_source(&do_sim)
                .raw("rate_limit_per_minute", "1000000")
                .raw("max_concurrency", "256"),
            kibana_source(&kb_sim).raw("max_concurrency", "256"),
            // Named bots: one `/usage/fetch` per bot and window, all at once.
            cbk_source(&cbk_sim)
                .list("agents", &bots)
                .raw("max_concurrency", "256"),
        ],
    )?;
    let (gw, auth) = ctx.gateway("s2-fan-out", &spec).await?;
    let origin = midnight(now.date_naive() - chrono::Days::new(60));
    let client = load::client()?;
    // Request i asks for the day starting i minutes after `from`. No `Cache-Control:
    // no-cache`: since issue 25 it also bypasses the providers' own caches (Kibana walks its
    // conversations again, under a per-agent lock, and every source lists its agents again),
    // which measured the queue behind that lock (p50 1.6 s), not the fan-out. Unique ranges
    // alone miss the window and response caches (`bucket` none: one window per query).
    let make = |from: DateTime<Utc>, i: u64| {
        let (start, end) = day_after(from, i);
        client
            .get(format!(
                "{}/v1/usage?start={}&end={}&group_by=source,agent",
                gw.base,
                rfc3339(start),
                rfc3339(end)
            ))
            .header("authorization", &auth)
    };
    // Warm-up: connections, agent discovery and Kibana's scan back to two days before the
    // measured ranges, which it never asks for.
    let warm = load::closed_loop(
        32,
        Bound {
            requests: 96,
            time: Duration::from_secs(30),
        },
        |i| make(origin - chrono::Duration::days(2), i),
        complete,
    )
    .await;
    if warm.errors > 0 {
        return Err(format!("{} of 96 warm-up requests failed", warm.errors));
    }
    // The floor: the same load straight at one vendor call (what the gateway waits for at best).
    let agent = data
        .digitalocean
        .agents()
        .first()
        .map(|a| a.uuid.clone())
        .ok_or("no DigitalOcean agent")?;
    let direct = load::closed_loop(
        32,
        Bound {
            requests: 50_000,
            time: Duration::from_secs(3),
        },
        |_| {
            client
                .get(format!(
                    "{}/v2/gen-ai/agents/{agent}/usage?start={}&stop={}",
                    do_sim.base_url,
                    rfc3339(origin),
                    rfc3339(origin + chrono::Duration::days(1))
                ))
                .bearer_auth(usage_sim::DO_TOKEN)
        },
        |a| a.status.is_success(),
    )
    .await;
    let agents = do_agents(&data);
    let calls_per_request = agents.len() + bots.len();
    let fan_out = FanOut {
        agents,
        bots: bots.clone(),
        do_base: do_sim.base_url.clone(),
        cbk_base: cbk_sim.base_url.clone(),
        origin,
    };
    println!(
        "  {FAN_OUT_ROUNDS} rounds of {} s: the reference ({calls_per_request} vendor calls at once) and the gateway, alternating which goes first",
        FAN_OUT_ROUND.as_secs_f64()
    );
    // Rounds of reference and gateway runs, alternating which goes first; each side's samples
    // are pooled over the rounds, so both sides see the same stretches of the machine. Every
    // gateway request (over all rounds) has a range of its own.
    let mut gateway = Samples::default();
    let mut reference = Samples::default();
    let (mut next_gateway, mut next_reference) = (0u64, 0u64);
    let (mut do_calls, mut cbk_calls, mut kb_calls) = (0, 0, 0);
    for round in 0..FAN_OUT_ROUNDS {
        for gateway_turn in [round % 2 == 0, round % 2 == 1] {
            if gateway_turn {
                let before = (
                    do_sim.calls("do.usage"),
                    cbk_sim.calls("cbk.bot_usage"),
                    kb_sim.calls("kibana.consumption"),
                );
                let first = next_gateway;
                let run = load::closed_loop_samples(
                    32,
                    Bound {
                        requests: 50_000,
                        time: FAN_OUT_ROUND,
                    },
                    |i| make(origin, first + i),
                    complete,
                )
                .await;
                do_calls += do_sim.calls("do.usage") - before.0;
                cbk_calls += cbk_sim.calls("cbk.bot_usage") - before.1;
                kb_calls += kb_sim.calls("kibana.consumption") - before.2;
                next_gateway += run.latencies.len() as u64;
                gateway.add(run);
            } else {
                let run = fan_out.reference(next_reference).await?;
                next_reference += run.latencies.len() as u64;
                reference.add(run);
            }
        }
    }
    let (s, reference) = (gateway.summary(), reference.summary());
    let n = s.requests.max(1) as f64;
    let per = |c: u64| c as f64 / n;
    let fanned = format!(
        "vendor requests per request: do {:.2}, cbk {:.2}, kibana {:.2}",
        per(do_calls),
        per(cbk_calls),
        per(kb_calls),
    );
    gw.stop();
    for sim in [do_sim, kb_sim, cbk_sim] {
        sim.stop().await;
    }
    let millis = |d: Duration| d.as_secs_f64() * 1000.0;
    let p50 = Relative::difference_at_most(FAN_OUT_P50_ALLOWANCE_MS);
    let p99 = Relative::ratio_at_most(FAN_OUT_P99_RATIO);
    Ok(vec![
        Row::relative(
            "2 fan-out: 3 sources x 50 ms, 32 concurrent, unique ranges",
            Some(s.clone()),
            format!(
                "p50 {} vs reference {}: {}",
                ms(s.p50),
                ms(reference.p50),
                signed_ms(s.p50, reference.p50)
            ),
            (millis(s.p50), millis(reference.p50)),
            (
                format!("p50 <= reference + {FAN_OUT_P50_ALLOWANCE_MS} ms"),
                p50,
            ),
            ctx.margin,
        ),
        Row::relative(
            "2 fan-out (same runs)",
            None,
            format!(
                "p99 {} vs reference {}: {:.2} x",
                ms(s.p99),
                ms(reference.p99),
                p99.figure(millis(s.p99), millis(reference.p99))
            ),
            (millis(s.p99), millis(reference.p99)),
            (format!("p99 <= {FAN_OUT_P99_RATIO} x reference"), p99),
            ctx.margin,
        ),
        Row::info("2 fan-out (same runs)", None, fanned),
        Row::info(
            format!(
                "2 reference: a request's {calls_per_request} vendor calls sent at once by the bench, 32 concurrent"
            ),
            Some(reference.clone()),
            format!(
                "pooled over {FAN_OUT_ROUNDS} rounds alternating with the gateway's; gateway minus reference: p50 {}, p99 {}",
                signed_ms(s.p50, reference.p50),
                signed_ms(s.p99, reference.p99)
            ),
        ),
        Row::info(
            "2 floor: one vendor call, 50 ms, 32 concurrent, direct (information)",
            Some(direct.clone()),
            format!(
                "gateway over the floor: p50 {}, p99 {}",
                signed_ms(s.p50, direct.p50),
                signed_ms(s.p99, direct.p99)
            ),
        ),
    ])
}

/// Rounds of scenario 2: each side runs this long per round, so 10 s in all, as the gateway's
/// single run did before.
const FAN_OUT_ROUNDS: usize = 5;
/// Length of each side's run in a round of scenario 2.
const FAN_OUT_ROUND: Duration = Duration::from_secs(2);
/// Scenario 2 (issue 20): gateway p50 <= reference p50 + this many milliseconds.
const FAN_OUT_P50_ALLOWANCE_MS: f64 = 1.5;
/// Scenario 2 (issue 20): gateway p99 <= reference p99 x this.
const FAN_OUT_P99_RATIO: f64 = 1.1;

/// Scenario 2's reference: the vendor calls the gateway sends for one request (one per
/// DigitalOcean agent, one per ChatBotKit bot, for a day's range, with the query parameters the
/// providers send), sent at once by the bench's own client; a unit takes as long as its slowest
/// call. Not a strict floor (the sender costs CPU on the same two cores, and it does none of
/// the gateway's other work), but what these calls take on this machine with a plain client.
#[derive(Debug, Clone)]
struct FanOut {
    agents: Vec<String>,
    bots: Vec<String>,
    do_base: String,
    cbk_base: String,
    origin: DateTime<Utc>,
}

impl FanOut {
    /// One round: 32 units in a closed loop on two threads with a single-threaded runtime and a
    /// client each (the shape of the gateway's two actix workers); unit i asks for the day
    /// starting `first + i` minutes after the origin.
    async fn reference(&self, first: u64) -> Result<Samples, String> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            load::closed_loop_threads(
                2,
                32,
                Bound {
                    requests: 50_000,
                    time: FAN_OUT_ROUND,
                },
                || {
                    let client = load::client()?;
                    let me = &me;
                    Ok(move |i: u64| {
                        let (start, end) = day_after(me.origin, first + i);
                        let millis =
                            |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
                        let do_calls = me.agents.iter().map(|a| {
                            client
                                .get(format!(
                                    "{}/v2/gen-ai/agents/{a}/usage?start={}&stop={}",
                                    me.do_base,
                                    rfc3339(start),
                                    rfc3339(end - chrono::Duration::seconds(1))
                                ))
                                .bearer_auth(usage_sim::DO_TOKEN)
                        });
                        let cbk_calls = me.bots.iter().map(|b| {
                            client
                                .get(format!(
                                    "{}/v1/bot/{b}/usage/fetch?from={}&to={}",
                                    me.cbk_base,
                                    millis(start),
                                    millis(end - chrono::Duration::milliseconds(1))
                                ))
                                .bearer_auth(usage_sim::CBK_TOKEN)
                        });
                        load::all_of(do_calls.chain(cbk_calls).collect(), |a| {
                            a.status.is_success()
                        })
                    })
                },
            )
        })
        .await
        .map_err(|e| format!("the reference load failed: {e}"))?
    }
}

/// Scenario 3: 500 simultaneous identical cold requests; every vendor request must be sent
/// once (the simulators' counters equal what one provider call reports).
pub async fn coalescing(ctx: &Ctx) -> Result<Vec<Row>, String> {
    const N: usize = 500;
    let now = Utc::now();
    let sims = usage_sim::start_all(&DataSpec::small(now))
        .await
        .map_err(io_err("simulators"))?;
    // A slow vendor keeps the first call in flight while all 500 requests arrive.
    for s in [&sims.digitalocean, &sims.kibana, &sims.chatbotkit] {
        s.faults()
            .set_latency(Duration::from_millis(100), Duration::ZERO);
    }
    let spec = ctx.config(64 * MIB, all_sources(&sims))?;
    let (gw, auth) = ctx.gateway("s3-coalescing", &spec).await?;
    let client = load::client()?;
    load::preconnect(&client, &format!("{}/healthz", gw.base), N).await?;
    let today = now.date_naive();
    let days = 7;
    let url = format!(
        "{}/v1/usage?start={}&end={}&bucket=day&group_by=source,agent",
        gw.base,
        today - chrono::Days::new(days),
        today
    );
    for s in [&sims.digitalocean, &sims.kibana, &sims.chatbotkit] {
        s.reset_calls();
    }
    let (s, answers) = load::burst(
        N,
        |_| client.get(&url).header("authorization", &auth),
        complete,
    )
    .await;
    // Every answer must report the same upstream requests: those of the one shared call.
    let reported: Vec<BTreeMap<String, u64>> = answers
        .iter()
        .flatten()
        .filter_map(|a| upstream_requests(&a.body))
        .collect();
    let first = reported.first().cloned().unwrap_or_default();
    let disagreeing = reported.iter().filter(|r| **r != first).count();
    let observed = BTreeMap::from([
        ("cbk".to_owned(), sims.chatbotkit.total_calls()),
        ("do".to_owned(), sims.digitalocean.total_calls()),
        ("kibana".to_owned(), sims.kibana.total_calls()),
    ]);
    // Independently of what the gateway reports: one DigitalOcean usage call per agent and day.
    let do_agents = sims.data.digitalocean.agents().len() as u64;
    let do_usage = sims.digitalocean.calls("do.usage");
    let expected_do_usage = do_agents * days;
    gw.stop();
    sims.stop().await;

    let observed_total: u64 = observed.values().sum();
    let expected_total: u64 = first.values().sum();
    let detail = observed
        .iter()
        .map(|(k, v)| format!("{k} {v}/{}", first.get(k).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut rows = vec![Row::judged(
        "3 coalescing: 500 identical cold requests at once",
        Some(s),
        (
            format!("{observed_total} vendor requests ({detail}) for {N} requests"),
            observed_total as f64,
        ),
        (
            format!("{expected_total} = one call's requests"),
            Target::Exactly(expected_total as f64),
        ),
        ctx.margin,
    )];
    rows.push(Row::judged(
        "3 coalescing (same burst)",
        None,
        (
            format!("do.usage {do_usage}, {disagreeing} answers disagree"),
            // Any disagreeing answer fails the line whatever the count.
            if disagreeing == 0 {
                do_usage as f64
            } else {
                f64::NAN
            },
        ),
        (
            format!("{expected_do_usage} = {do_agents} agents x {days} days, 0"),
            Target::Exactly(expected_do_usage as f64),
        ),
        ctx.margin,
    ));
    if first.is_empty() || observed_total == 0 {
        rows.push(Row::judged(
            "3 coalescing: answers",
            None,
            ("no upstream request seen".into(), 0.0),
            ("> 0".into(), Target::AtLeast(1.0)),
            ctx.margin,
        ));
    }
    Ok(rows)
}

/// The large data set of scenarios 4 and 5: Kibana and ChatBotKit simulators at 0 ms.
pub struct BigSims {
    data: Arc<Dataset>,
    kibana: SimHandle,
    cbk: SimHandle,
    now: DateTime<Utc>,
}

impl std::fmt::Debug for BigSims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigSims")
            .field("kibana", &self.kibana.base_url)
            .field("cbk", &self.cbk.base_url)
            .finish_non_exhaustive()
    }
}

impl BigSims {
    /// Generates `DataSpec::bench` and starts the two simulators.
    pub async fn start() -> Result<Self, String> {
        let (data, now) = bench_data().await?;
        let kibana = usage_sim::start_kibana(data.clone(), None)
            .await
            .map_err(io_err("Kibana simulator"))?;
        let cbk = usage_sim::start_chatbotkit(data.clone(), None)
            .await
            .map_err(io_err("ChatBotKit simulator"))?;
        Ok(Self {
            data,
            kibana,
            cbk,
            now,
        })
    }

    /// Stops the simulators.
    pub async fn stop(self) {
        self.kibana.stop().await;
        self.cbk.stop().await;
    }
}

/// Generates `DataSpec::bench` as of now (scenarios 4 to 8); returns it with its `now`.
pub async fn bench_data() -> Result<(Arc<Dataset>, DateTime<Utc>), String> {
    let now = Utc::now();
    let started = Instant::now();
    let data = Arc::new(
        tokio::task::spawn_blocking(move || Dataset::generate(&DataSpec::bench(now)))
            .await
            .map_err(|e| format!("data generation: {e}"))?,
    );
    println!(
        "  generated the bench data set in {}",
        ms(started.elapsed())
    );
    Ok((data, now))
}

/// Cold runs of scenario 4, each on a fresh gateway.
const COLD_RUNS: usize = 5;

/// What one cold run of scenario 4 measured.
#[derive(Debug, Clone, Copy)]
struct ColdRun {
    /// Gateway CPU time over the request.
    cpu: Duration,
    /// CPU time of the calibration run paired with it.
    calibration: Duration,
    /// Its wall time.
    wall: Duration,
    /// Peak RSS after it, bytes.
    hwm: u64,
    /// Vendor requests the answer reports.
    sent: u64,
    /// Whether the totals differ from the simulators' ground truth.
    wrong: bool,
}

/// Warm requests of scenario 4: enough that p99 is not the single slowest request (one
/// hiccup of the shared machine made a run of 100 miss the target by 60 %).
const WARM_REQUESTS: u64 = 1000;

/// Scenario 4: one Kibana agent with 20 000 conversations (200 pages) and ChatBotKit with
/// 100 000 records, cold (CPU time, peak RSS) and then warm.
pub async fn large(ctx: &Ctx, big: &BigSims) -> Result<Vec<Row>, String> {
    let agents = big.data.kibana.agents("default");
    let agent = agents
        .iter()
        .max_by_key(|a| big.data.kibana.conversations("default", &a.id).len())
        .ok_or("the bench data has no Kibana agent")?;
    let conversations = big.data.kibana.conversations("default", &agent.id).len() as u64;
    // What ChatBotKit sends: the provider asks for `type=BASE` records (the default
    // `record_types`), and the simulator filters like the vendor.
    let records = big
        .data
        .chatbotkit
        .records()
        .iter()
        .filter(|r| r.usage_type == usage_sim::BASE_TYPE)
        .count() as u64;
    let spec = ctx.config(
        64 * MIB,
        vec![
            kibana_source(&big.kibana).list("agents", std::slice::from_ref(&agent.id)),
            cbk_source(&big.cbk),
        ],
    )?;
    let start = midnight(big.now.date_naive() - chrono::Days::new(91));
    let end = midnight(big.now.date_naive() + chrono::Days::new(1));
    let path = format!(
        "/v1/usage?start={}&end={}&bucket=day&group_by=source,agent",
        rfc3339(start),
        rfc3339(end)
    );
    // The answer must hold every record: compare with the simulators' ground truth.
    let window = usage_core::Window::new(start, end);
    let kb_truth = big
        .data
        .kibana
        .truth("default", &TruthFilter::agent(&agent.id), window);
    let cbk_truth = big.data.chatbotkit.truth(
        &TruthFilter {
            usage_type: Some(usage_sim::BASE_TYPE.to_owned()),
            ..TruthFilter::default()
        },
        window,
    );
    let want = BTreeMap::from([
        ("credits".to_owned(), cbk_truth),
        (
            "tokens".to_owned(),
            kb_truth.input + kb_truth.output + kb_truth.other,
        ),
    ]);
    // Each cold run on a fresh gateway; the figure is the median run (one run's CPU time moves
    // by a third between runs here), the peak RSS the highest of all.
    let pages = calibration::Pages {
        kibana_base: big.kibana.base_url.clone(),
        agent: agent.id.clone(),
        cbk_base: big.cbk.base_url.clone(),
        take: CBK_PAGE_SIZE,
    };
    println!(
        "  {COLD_RUNS} cold runs, each on a fresh gateway, paired with a calibration run (the same vendor pages fetched with a bare reqwest client and decoded with serde_json), alternating which goes first"
    );
    let mut runs = Vec::with_capacity(COLD_RUNS);
    let mut last = None;
    for run in 1..=COLD_RUNS {
        let calibrate = || {
            let pages = pages.clone();
            async move {
                tokio::task::spawn_blocking(move || calibration::run(&pages))
                    .await
                    .map_err(|e| format!("calibration: {e}"))?
            }
        };
        let calibrated_first = run % 2 == 1;
        let early = if calibrated_first {
            Some(calibrate().await?)
        } else {
            None
        };
        let (gw, auth) = ctx.gateway(&format!("s4-large-{run}"), &spec).await?;
        let url = format!("{}{path}", gw.base);
        let cpu0 = gw.cpu()?;
        let t = Instant::now();
        let cold = fetch(&ctx.client, &url, &auth).await?;
        let wall = t.elapsed();
        let cpu = gw.cpu()?.since(&cpu0);
        let hwm = gw.memory()?.hwm;
        let sent: u64 = upstream_requests(&cold.body)
            .unwrap_or_default()
            .values()
            .sum();
        let wrong = totals(&cold.body).unwrap_or_default() != want;
        let calibrated = match early {
            Some(c) => c,
            None => calibrate().await?,
        };
        // The calibration must do the gateway's work: the same requests for the same items.
        if (
            calibrated.conversations,
            calibrated.records,
            calibrated.requests,
        ) != (conversations, records, sent)
        {
            return Err(format!(
                "the calibration read {} conversations and {} records in {} requests, the gateway {conversations} and {records} in {sent}: it no longer sends the providers' requests",
                calibrated.conversations, calibrated.records, calibrated.requests
            ));
        }
        println!(
            "  run {run}: gateway CPU {}, calibration {}: {:.2} x",
            ms(cpu),
            ms(calibrated.cpu),
            report::ratio(cpu.as_secs_f64(), calibrated.cpu.as_secs_f64())
        );
        runs.push(ColdRun {
            cpu,
            calibration: calibrated.cpu,
            wall,
            hwm,
            sent,
            wrong,
        });
        if run == COLD_RUNS {
            last = Some((gw, auth, url, cold));
        } else {
            gw.stop();
        }
    }
    let (gw, auth, url, cold) = last.ok_or("no cold run")?;
    let hwm = runs.iter().map(|r| r.hwm).max().unwrap_or_default();
    let wrong = runs.iter().filter(|r| r.wrong).count() as u64;
    let ratios: Vec<f64> = runs
        .iter()
        .map(|r| report::ratio(r.cpu.as_secs_f64(), r.calibration.as_secs_f64()))
        .collect();
    let ratio = report::median(&ratios);
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let all_ratios: Vec<String> = sorted.iter().map(|r| format!("{r:.2}")).collect();
    let per_10k =
        |d: Duration| d.as_secs_f64() * 1000.0 / ((conversations + records) as f64 / 10_000.0);
    let median_of = |pick: fn(&ColdRun) -> Duration| {
        let mut v: Vec<Duration> = runs.iter().map(pick).collect();
        v.sort();
        let all: Vec<String> = v.iter().map(|d| ms(*d)).collect();
        (v[v.len() / 2], all.join(", "))
    };
    let (cpu, all_cpu) = median_of(|r| r.cpu);
    let (calibration_cpu, all_calibration) = median_of(|r| r.calibration);
    runs.sort_by_key(|r| r.cpu);
    let ColdRun {
        wall,
        sent: upstream,
        ..
    } = runs[runs.len() / 2];
    let client = load::client()?;
    let warm = load::closed_loop(
        1,
        Bound {
            requests: WARM_REQUESTS,
            time: Duration::from_secs(30),
        },
        |_| client.get(&url).header("authorization", &auth),
        |a| a.status.is_success() && a.body == cold.body,
    )
    .await;
    gw.stop();

    let cold_load = Summary {
        errors: wrong,
        ..Summary::from_samples(vec![wall], 0, wall)
    };
    Ok(vec![
        Row::judged(
            "4 large data cold: 1 Kibana agent + ChatBotKit, 0 ms",
            Some(cold_load),
            (
                format!(
                    "{ratio:.2} x calibration CPU (median of {}); gateway CPU {} = {:.1} ms / 10k records (median of {all_cpu}) for {conversations} conversations + {records} records in {upstream} vendor requests",
                    all_ratios.join(", "),
                    ms(cpu),
                    per_10k(cpu),
                ),
                ratio,
            ),
            (
                format!("<= {LARGE_VS_CALIBRATION} x calibration"),
                Target::AtMost(LARGE_VS_CALIBRATION),
            ),
            ctx.margin,
        ),
        Row::info(
            "4 calibration: the same pages, bare reqwest + serde_json::Value, one thread",
            None,
            format!(
                "CPU {} = {:.1} ms / 10k records (median of {all_calibration})",
                ms(calibration_cpu),
                per_10k(calibration_cpu)
            ),
        ),
        Row::judged(
            "4 large data cold (same requests)",
            None,
            (
                format!("peak RSS {} (highest of the runs)", mib(hwm)),
                hwm as f64 / MIB as f64,
            ),
            ("<= 150 MiB".into(), Target::AtMost(150.0)),
            ctx.margin,
        ),
        Row::info(
            "4 large data warm: same query, 1000 sequential (information)",
            Some(warm.clone()),
            format!("p99 {} ({} B body)", ms(warm.p99), cold.body.len()),
        ),
    ])
}

/// `take` of ChatBotKit's list requests: the provider's default `page_size`, which scenario 4's
/// source keeps (the calibration checks that it sent as many requests as the gateway).
const CBK_PAGE_SIZE: u32 = 1000;
/// Scenario 4: gateway CPU time for the cold query <= this x the calibration's. Set from the
/// runs of issue 20 (BENCHMARKS.md, "Results"): medians 0.46–0.55 in 23 runs at load averages
/// 1–10, with and without CPU hogs beside them; 0.60 is above all of them, and the noise
/// margin puts the failure line at 0.66, a fifth above the highest.
const LARGE_VS_CALIBRATION: f64 = 0.6;

/// Zones whose offsets put hour boundaries at different instants (each gives new hourly
/// windows), then whole-hour zones (new daily windows).
pub const ZONES: [&str; 20] = [
    "UTC",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Adelaide",
    "America/St_Johns",
    "Asia/Tehran",
    "Asia/Yangon",
    "Australia/Eucla",
    "Pacific/Chatham",
    "Asia/Kabul",
    "Pacific/Marquesas",
    "Europe/Berlin",
    "Europe/Athens",
    "Asia/Dubai",
    "Asia/Tokyo",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Pacific/Honolulu",
];

/// Groupings: every subset of the vendor dimensions, so each is a distinct query shape whose
/// windows are distinct cache entries.
const GROUPINGS: [&str; 16] = [
    "source",
    "source,agent",
    "source,user",
    "source,conversation",
    "source,usage_type",
    "source,agent,user",
    "source,agent,conversation",
    "source,agent,usage_type",
    "source,user,conversation",
    "source,user,usage_type",
    "source,conversation,usage_type",
    "source,agent,user,conversation",
    "source,agent,user,usage_type",
    "source,agent,conversation,usage_type",
    "source,user,conversation,usage_type",
    "source,agent,user,conversation,usage_type",
];

/// Scenario 5: start-up time and idle RSS of a fresh gateway, then RSS once dashboard-style
/// queries (hourly and daily buckets, distinct groupings and time zones) have filled the cache
/// to its byte budget.
pub async fn footprint(ctx: &Ctx) -> Result<Vec<Row>, String> {
    const BUDGET: u64 = 64 * MIB;
    let now = Utc::now();
    let sims = usage_sim::start_all(&DataSpec::small(now))
        .await
        .map_err(io_err("simulators"))?;
    let spec = ctx.config(
        BUDGET,
        vec![kibana_source(&sims.kibana), cbk_source(&sims.chatbotkit)],
    )?;
    let (gw, auth) = ctx.gateway("s5-footprint", &spec).await?;
    let startup = gw.startup;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = gw.memory()?;

    // Query i: grouping i % 16, zone (i / 16) % 20, then an agent filter per round of 320
    // (a filter is part of the cached shape). Hourly buckets over 83 days (under `max_buckets`)
    // in the 11 zones with distinct hour boundaries, daily buckets over 90 days in the others.
    let mut filters = vec![String::new()];
    filters.extend(
        sims.data
            .kibana
            .agents("default")
            .iter()
            .map(|a| format!("&agent=kibana/{}", a.id)),
    );
    filters.extend(
        sims.data
            .chatbotkit
            .bots()
            .iter()
            .map(|b| format!("&agent=cbk/{}", b.id)),
    );
    let end = now.date_naive() + chrono::Days::new(1);
    let per_round = (ZONES.len() * GROUPINGS.len()) as u64;
    let url = |i: u64| {
        let grouping = GROUPINGS[(i % GROUPINGS.len() as u64) as usize];
        let z = (i / GROUPINGS.len() as u64) as usize % ZONES.len();
        let filter = &filters[(i / per_round) as usize % filters.len()];
        let (bucket, days) = if z < 11 { ("hour", 83) } else { ("day", 90) };
        let start = end - chrono::Days::new(days);
        format!(
            "{}/v1/usage?start={start}&end={end}&bucket={bucket}&tz={}&group_by={grouping}{filter}",
            gw.base, ZONES[z]
        )
    };
    let client = load::client()?;
    let fill_started = Instant::now();
    let mut samples = Vec::new();
    let mut errors = 0;
    let mut weighted;
    let mut i = 0;
    let goal = BUDGET as f64 * 0.9;
    let max = per_round * filters.len() as u64;
    // Fill to 90 % of the budget, then send half as many again (eviction churn).
    let mut filled_at = None;
    while i < max && fill_started.elapsed() < Duration::from_secs(120) {
        let t = Instant::now();
        let ok = client
            .get(url(i))
            .header("authorization", &auth)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        samples.push(t.elapsed());
        errors += u64::from(!ok);
        i += 1;
        weighted = gw
            .metric(&client, "usage_gateway_cache_weighted_bytes", "")
            .await?;
        match filled_at {
            None if weighted >= goal => filled_at = Some(i),
            Some(at) if i >= at + at / 2 => break,
            _ => {}
        }
    }
    let fill = Summary::from_samples(samples, errors, fill_started.elapsed());
    // Let moka finish pending evictions before reading the figures.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let windows = gw
        .metric(
            &client,
            "usage_gateway_cache_weighted_bytes",
            "cache=\"windows\"",
        )
        .await?;
    let responses = gw
        .metric(
            &client,
            "usage_gateway_cache_weighted_bytes",
            "cache=\"responses\"",
        )
        .await?;
    weighted = windows + responses;
    let entries = gw
        .metric(&client, "usage_gateway_cache_entries", "")
        .await?;
    let filled = gw.memory()?;
    gw.stop();
    sims.stop().await;
    println!(
        "  {i} queries in {}: cache windows {} + responses {} in {entries:.0} entries; RSS {} (peak {})",
        ms(fill.wall),
        mib(windows as u64),
        mib(responses as u64),
        mib(filled.rss),
        mib(filled.hwm)
    );

    let fill_pct = weighted / BUDGET as f64 * 100.0;
    let fill_figure = match filled_at {
        Some(at) => format!(
            "cache {} of {} ({fill_pct:.0} %) after {at} queries, {i} sent",
            mib(weighted as u64),
            mib(BUDGET)
        ),
        None => format!(
            "cache only reached {} of {} ({fill_pct:.0} %) after {i} queries",
            mib(weighted as u64),
            mib(BUDGET)
        ),
    };
    let limit = (BUDGET + 60 * MIB) as f64 / MIB as f64;
    Ok(vec![
        Row::info(
            "5 footprint: start-up to ready (information)",
            None,
            ms(startup),
        ),
        Row::judged(
            "5 footprint: idle RSS after start",
            None,
            (mib(idle.rss), idle.rss as f64 / MIB as f64),
            ("<= 30 MiB".into(), Target::AtMost(30.0)),
            ctx.margin,
        ),
        Row::judged(
            "5 footprint: fill the cache with distinct queries",
            Some(fill),
            (fill_figure, if filled_at.is_some() { 1.0 } else { 0.0 }),
            (">= 90 % of the budget".into(), Target::AtLeast(1.0)),
            0.0,
        ),
        Row::judged(
            "5 footprint: RSS with the cache full",
            None,
            (
                format!("RSS {} (peak {})", mib(filled.rss), mib(filled.hwm)),
                filled.rss as f64 / MIB as f64,
            ),
            (
                format!("<= budget + 60 MiB = {limit:.0} MiB"),
                Target::AtMost(limit),
            ),
            ctx.margin,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn complete_means_200_and_complete_true() {
        assert!(complete(&answer(200, r#"{"complete":true,"rows":[]}"#)));
        assert!(!complete(&answer(200, r#"{"complete":false}"#)));
        assert!(!complete(&answer(502, r#"{"complete":true}"#)));
        assert!(!complete(&answer(200, "not json")));
    }

    #[test]
    fn reads_sources_and_totals() {
        let body = br#"{"complete":true,
            "totals":[{"unit":"credits","total_tokens":7},{"unit":"tokens","total_tokens":12}],
            "sources":[{"source":"do","upstream_requests":29},{"source":"kibana","upstream_requests":3}]}"#;
        assert_eq!(
            upstream_requests(body),
            Some(BTreeMap::from([("do".into(), 29), ("kibana".into(), 3)]))
        );
        assert_eq!(
            totals(body),
            Some(BTreeMap::from([
                ("credits".into(), 7),
                ("tokens".into(), 12)
            ]))
        );
        assert_eq!(upstream_requests(b"{}"), None);
    }

    #[test]
    fn formats_query_instants() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        assert_eq!(rfc3339(midnight(d)), "2026-03-01T00:00:00Z");
    }
}
