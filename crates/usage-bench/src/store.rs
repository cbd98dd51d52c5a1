//! The usage store's scenarios (issue 26): 6 the read path from SQLite and PostgreSQL beside
//! the live path, 7 three replicas on one PostgreSQL store, 8 the one-shot backfill. Each starts
//! the simulators it needs over the bench data set, fills its store with `usage-gateway sync`
//! and runs `usage-gateway serve` subprocesses on generated configs, as scenarios 1–5 do.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::future::join_all;
use serde_json::Value;
use usage_sim::{Dataset, DoOptions, SimHandle};

use crate::gateway::{self, ConfigSpec, SourceTable, SyncRun, Synced, quote};
use crate::load::Answer;
use crate::postgres::Postgres;
use crate::report::{Relative, Row, Target};
use crate::scenarios::{
    Ctx, ZONES, cbk_source, complete, do_agents, do_source, io_err, rfc3339, totals,
    upstream_requests,
};
use crate::stats::{Summary, mib, ms};

const MIB: u64 = 1024 * 1024;

/// Hours in a (non-leap) year, to scale a store's size to a year of history.
const HOURS_PER_YEAR: f64 = 8760.0;

/// Scenario 6: store p50 <= this x the live path's p50 for the same query (issue 26 asks for
/// a store read path much faster than asking the vendors; the bound leaves room for a store
/// read that costs as much as half the vendors' time, far more than the measured figures).
const STORE_VS_LIVE: f64 = 0.5;
/// Scenario 6: issue 26's absolute p50 for SQLite, printed for information (issue 20: judged
/// against the same-run live path).
const ISSUE_P50_SQLITE_MS: f64 = 50.0;
/// Scenario 6: issue 26's absolute p50 for PostgreSQL, printed for information.
const ISSUE_P50_POSTGRES_MS: f64 = 100.0;
/// Scenario 6: sequential store requests per engine, each with a query of its own.
const STORE_REQUESTS: u64 = 40;
/// Scenario 6: live requests, each on a fresh gateway (tens of thousands of vendor calls
/// each).
const LIVE_REQUESTS: u64 = 3;
/// Scenario 6: requests per engine of the per-agent variant (information).
const BY_AGENT_REQUESTS: u64 = 10;

/// The DigitalOcean simulator's per-token limit in scenario 7 (its default, DigitalOcean's).
const DO_LIMIT_PER_MINUTE: f64 = 250.0;
/// Scenario 7's replicas.
const REPLICAS: usize = 3;
/// Scenario 7's distinct queries (each sent to every replica).
const DISTINCT_QUERIES: u64 = 20;

/// Scenario 8's `rate_limit_per_minute`: raised so that 90 days take minutes, not hours.
const BACKFILL_RATE: f64 = 60_000.0;
/// The default `store.budget_share` (scenario 8 keeps it).
const BUDGET_SHARE: f64 = 0.5;
/// DigitalOcean's real limit times the default share: the syncer's pace in production.
const REAL_SYNC_PER_MINUTE: f64 = 125.0;

/// The PostgreSQL cluster of scenarios 6 and 7, or why there is none.
pub type Cluster = Result<Postgres, String>;

/// Start of the UTC hour of `t`.
fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

/// Bytes of the pages an SQLite store uses (`page_count - freelist_count`, times `page_size`):
/// what its file holds once checkpointed, pages still in the write-ahead log included (`sync`
/// exits without checkpointing, so the file's size alone misses them and file plus log counts
/// pages twice).
async fn sqlite_bytes(path: &Path) -> Result<u64, String> {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}", path.display());
    let mut conn = sqlx::sqlite::SqliteConnection::connect(&url)
        .await
        .map_err(|e| format!("cannot open {url}: {e}"))?;
    let (bytes,): (i64,) = sqlx::query_as(
        "SELECT (c.page_count - f.freelist_count) * s.page_size \
         FROM pragma_page_count() c, pragma_freelist_count() f, pragma_page_size() s",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| format!("cannot read the size of {url}: {e}"))?;
    let _ = conn.close().await;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

/// Starts a DigitalOcean simulator over `data` without its 250/min limit (fills and backfills
/// send tens of thousands of requests in minutes).
async fn unlimited_do(data: &Arc<Dataset>) -> Result<SimHandle, String> {
    usage_sim::start_digitalocean(
        data.clone(),
        DoOptions {
            rate_limit_per_minute: 0,
        },
        None,
    )
    .await
    .map_err(io_err("DigitalOcean simulator"))
}

/// A DigitalOcean source over a fixed agent list, with its budget, per-query cap and
/// concurrency raised so that a 90-day hourly query can run live at all (2160 windows x 10
/// agents = 21 600 vendor requests).
fn wide_do_source(name: &str, sim: &SimHandle, agents: &[String]) -> SourceTable {
    SourceTable::new(name, "digitalocean", &sim.base_url)
        .string("token", usage_sim::DO_TOKEN)
        .list("agents", agents)
        .raw("rate_limit_per_minute", "1000000")
        .raw("max_upstream_calls", "30000")
        .raw("max_concurrency", "32")
}

/// `[store]` keys: the store at `url` plus `extra`.
fn store_table(url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut keys = vec![("url".to_owned(), quote(url))];
    keys.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    keys
}

/// Runs `usage-gateway sync` off the runtime's threads (it runs for minutes while the
/// simulators answer it in this process).
async fn sync(
    ctx: &Ctx,
    name: &str,
    spec: &ConfigSpec,
    since: &'static str,
    source: Option<&'static str>,
) -> Result<(Vec<Synced>, Duration), String> {
    let (bin, dir, name, spec, secret) = (
        ctx.bin.clone(),
        ctx.dir.clone(),
        name.to_owned(),
        spec.clone(),
        ctx.secret.clone(),
    );
    tokio::task::spawn_blocking(move || {
        gateway::sync(&bin, &dir, &name, &spec, &secret, SyncRun { since, source })
    })
    .await
    .map_err(|e| format!("sync task: {e}"))?
}

/// One engine's fill of scenario 6: each source synced on its own, the store's size read after
/// each.
#[derive(Debug, Clone, Default)]
struct Fill {
    /// Per source: hours stored, vendor requests, bytes the store grew by.
    sources: Vec<(Synced, u64)>,
    wall: Duration,
}

impl Fill {
    /// `do-a 2184 h, 21 840 requests; …; in 63 s`.
    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .sources
            .iter()
            .map(|(s, _)| format!("{} {} h, {} requests", s.source, s.hours, s.requests))
            .collect();
        format!(
            "sync --since 91d: {}; in {:.0} s",
            parts.join("; "),
            self.wall.as_secs_f64()
        )
    }

    /// Each source's growth scaled to a year of hours.
    fn per_year(&self) -> String {
        let parts: Vec<String> = self
            .sources
            .iter()
            .map(|(s, bytes)| {
                let year = *bytes as f64 * HOURS_PER_YEAR / s.hours.max(1) as f64;
                format!(
                    "{} {} per year ({} for {} h)",
                    s.source,
                    mib(year as u64),
                    mib(*bytes),
                    s.hours
                )
            })
            .collect();
        parts.join("; ")
    }
}

/// Syncs scenario 6's sources one by one into the store of `spec`, reading its size with
/// `bytes` before and after each.
async fn fill<F: Future<Output = Result<u64, String>>>(
    ctx: &Ctx,
    name: &str,
    spec: &ConfigSpec,
    bytes: impl Fn() -> F,
) -> Result<Fill, String> {
    let mut out = Fill::default();
    let mut before = bytes().await?;
    for source in S6_SOURCES {
        let (lines, wall) =
            sync(ctx, &format!("{name}-{source}"), spec, "91d", Some(source)).await?;
        let line = lines
            .into_iter()
            .find(|l| l.source == source)
            .ok_or_else(|| format!("`usage-gateway sync` printed no line for {source}"))?;
        let after = bytes().await?;
        out.sources.push((line, after.saturating_sub(before)));
        out.wall += wall;
        before = after;
    }
    println!("  {name}: {}", out.describe());
    Ok(out)
}

/// Scenario 6's sources: two DigitalOcean sources on one simulator (10 agents each) and
/// ChatBotKit (its 10 bots, discovered).
const S6_SOURCES: [&str; 3] = ["do-a", "do-b", "cbk"];

/// Reports whether an answer is complete and every source's part came from the store: coverage
/// 1 and no vendor request.
fn from_store(a: &Answer) -> bool {
    complete(a)
        && serde_json::from_slice::<Value>(&a.body).ok().and_then(|v| {
            v.get("sources")?.as_array().map(|sources| {
                sources.iter().all(|s| {
                    s.get("store_coverage").and_then(Value::as_f64) == Some(1.0)
                        && s.get("upstream_requests").and_then(Value::as_u64) == Some(0)
                })
            })
        }) == Some(true)
}

/// Sends one GET and times it until the whole body is read; `None` on a transport error.
async fn timed(client: &reqwest::Client, url: String, auth: &str) -> (Duration, Option<Answer>) {
    let t = Instant::now();
    let answer = async {
        let r = client
            .get(url)
            .header("authorization", auth)
            .send()
            .await
            .ok()?;
        let status = r.status();
        let body = r.bytes().await.ok()?;
        Some(Answer { status, body })
    }
    .await;
    (t.elapsed(), answer)
}

/// One engine of scenario 6: its name, store URL, fill, and the issue's p50 for it.
struct Engine {
    name: &'static str,
    url: String,
    fill: Fill,
    issue_p50_ms: f64,
}

/// Scenario 6: a 90-day hourly query (`group_by=source`; `source,agent` for information) over
/// two DigitalOcean sources
/// (10 agents each, one simulator) and ChatBotKit, answered wholly from a filled store (SQLite,
/// and PostgreSQL when it runs) beside the live path for the same query. The response cache is
/// defeated by the query itself: request i ends `i mod 24` whole hours earlier (still inside
/// the 91 stored days) in one of 10 whole-hour zones (the same UTC hours as windows), so every
/// request is a query of its own and every store request reads the store. Each live request
/// runs on a fresh gateway, so that neither of its caches helps it.
pub async fn read_path(ctx: &Ctx, data: &Arc<Dataset>, pg: &Cluster) -> Result<Vec<Row>, String> {
    let do_sim = unlimited_do(data).await?;
    let cbk_sim = usage_sim::start_chatbotkit(data.clone(), None)
        .await
        .map_err(io_err("ChatBotKit simulator"))?;
    let agents = do_agents(data);
    let (first, second) = agents.split_at(agents.len() / 2);
    let mut spec = ctx.config(
        64 * MIB,
        vec![
            wide_do_source(S6_SOURCES[0], &do_sim, first),
            wide_do_source(S6_SOURCES[1], &do_sim, second),
            SourceTable {
                name: S6_SOURCES[2].to_owned(),
                ..cbk_source(&cbk_sim)
            },
        ],
    )?;
    spec.max_buckets = 2400;
    // The last hour `sync` stores now; every query ends at or before it.
    let end = floor_hour(Utc::now() - chrono::Duration::minutes(15));
    let zones: Vec<&str> = std::iter::once(ZONES[0])
        .chain(ZONES[11..].iter().copied())
        .collect();
    // Judged: per source (the default grouping; every agent's usage is added up in the
    // store). For information: per source and agent, an answer of about 13 MB.
    let path_grouped = |i: u64, group_by: &str| {
        let shift = chrono::Duration::hours((i % 24).cast_signed());
        let zone = zones[(i / 24) as usize % zones.len()];
        format!(
            "/v1/usage?start={}&end={}&bucket=hour&tz={zone}&group_by={group_by}",
            rfc3339(end - shift - chrono::Duration::days(90)),
            rfc3339(end - shift)
        )
    };
    let path = |i: u64| path_grouped(i, "source");

    let sqlite = ctx.dir.join("s6-store.sqlite");
    let sqlite_url = sqlite.display().to_string();
    spec.store = Some(store_table(&sqlite_url, &[("sync", "false")]));
    let mut engines = vec![Engine {
        name: "SQLite",
        fill: fill(ctx, "s6-sync-sqlite", &spec, || async {
            // No file before the first sync.
            if sqlite.exists() {
                sqlite_bytes(&sqlite).await
            } else {
                Ok(0)
            }
        })
        .await?,
        url: sqlite_url,
        issue_p50_ms: ISSUE_P50_SQLITE_MS,
    }];
    let mut rows = Vec::new();
    match pg {
        Ok(pg) => {
            let url = pg.database("s6")?;
            spec.store = Some(store_table(&url, &[("sync", "false")]));
            engines.push(Engine {
                name: "PostgreSQL",
                fill: fill(ctx, "s6-sync-postgres", &spec, || async {
                    pg.tables_bytes(&url)
                })
                .await?,
                url,
                issue_p50_ms: ISSUE_P50_POSTGRES_MS,
            });
        }
        Err(why) => rows.push(Row::info(
            "6 store read: PostgreSQL",
            None,
            format!("not run: {why}"),
        )),
    }

    // Store requests, alternating between the engines' gateways (both up at once, so that
    // both see the same stretches of the machine).
    let mut gateways = Vec::new();
    for e in &engines {
        let mut s = spec.clone();
        s.listen = gateway::free_addr().map_err(io_err("no free port"))?;
        s.store = Some(store_table(&e.url, &[("sync", "false")]));
        gateways.push(ctx.gateway(&format!("s6-store-{}", e.name), &s).await?);
    }
    println!(
        "  {STORE_REQUESTS} sequential requests per engine, alternating, each a query of its own; then {LIVE_REQUESTS} live requests, each on a fresh gateway"
    );
    let mut samples = vec![Vec::new(); engines.len()];
    let mut errors = vec![0u64; engines.len()];
    let mut store_totals = vec![None; engines.len()];
    let started = Instant::now();
    for i in 0..STORE_REQUESTS {
        for (k, (gw, auth)) in gateways.iter().enumerate() {
            let (took, answer) = timed(&ctx.client, format!("{}{}", gw.base, path(i)), auth).await;
            samples[k].push(took);
            errors[k] += u64::from(!answer.as_ref().is_some_and(from_store));
            if i == 0 {
                store_totals[k] = answer.and_then(|a| totals(&a.body));
            }
        }
    }
    let store_wall = started.elapsed();
    let mut by_agent = vec![Vec::new(); engines.len()];
    let agent_started = Instant::now();
    for i in 0..BY_AGENT_REQUESTS {
        for (k, (gw, auth)) in gateways.iter().enumerate() {
            let url = format!("{}{}", gw.base, path_grouped(i, "source,agent"));
            let (took, answer) = timed(&ctx.client, url, auth).await;
            by_agent[k].push(took);
            errors[k] += u64::from(!answer.as_ref().is_some_and(from_store));
        }
    }
    let agent_wall = agent_started.elapsed();
    for (gw, _) in gateways {
        gw.stop();
    }

    // The live path: the same queries on a gateway without a store.
    let mut live_spec = spec.clone();
    live_spec.store = None;
    let mut live = Vec::new();
    let mut live_errors = 0;
    let mut live_totals = None;
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    let live_started = Instant::now();
    for i in 0..LIVE_REQUESTS {
        live_spec.listen = gateway::free_addr().map_err(io_err("no free port"))?;
        let (gw, auth) = ctx.gateway(&format!("s6-live-{i}"), &live_spec).await?;
        let (took, answer) = timed(&ctx.client, format!("{}{}", gw.base, path(i)), &auth).await;
        gw.stop();
        println!("  live request {}: {}", i + 1, ms(took));
        live.push(took);
        let ok = answer.as_ref().is_some_and(complete);
        live_errors += u64::from(!ok);
        if let Some(a) = answer.filter(|_| ok) {
            for (source, n) in upstream_requests(&a.body).unwrap_or_default() {
                *sent.entry(source).or_default() += n;
            }
            if i == 0 {
                live_totals = totals(&a.body);
            }
        }
    }
    let live = Summary::from_samples(live, live_errors, live_started.elapsed());
    do_sim.stop().await;
    cbk_sim.stop().await;

    let per_query: Vec<String> = sent
        .iter()
        .map(|(s, n)| format!("{s} {}", n / LIVE_REQUESTS))
        .collect();
    let millis = |d: Duration| d.as_secs_f64() * 1000.0;
    let vs_live = Relative::ratio_at_most(STORE_VS_LIVE);
    for (k, e) in engines.iter().enumerate() {
        let s = Summary::from_samples(samples[k].clone(), errors[k], store_wall);
        let p50 = millis(s.p50);
        rows.push(Row::relative(
            format!(
                "6 store read: {}, 90 days hourly, 2 DO sources x 10 agents + ChatBotKit",
                e.name
            ),
            Some(s.clone()),
            format!(
                "p50 {} vs live p50 {}: {:.4} x",
                ms(s.p50),
                ms(live.p50),
                vs_live.figure(p50, millis(live.p50))
            ),
            (p50, millis(live.p50)),
            (format!("p50 <= {STORE_VS_LIVE} x live"), vs_live),
            ctx.margin,
        ));
        let agent = Summary::from_samples(by_agent[k].clone(), 0, agent_wall);
        rows.push(Row::info(
            format!(
                "6 store read: {}, the same by source and agent (answers of ~13 MB)",
                e.name
            ),
            Some(agent.clone()),
            format!(
                "p50 {}, p99 {} over {BY_AGENT_REQUESTS} requests (information)",
                ms(agent.p50),
                ms(agent.p99)
            ),
        ));
        rows.push(Row::info(
            format!("6 store read (same runs): {} p50 against issue 26", e.name),
            None,
            format!(
                "p50 {} against {} ms: {} (information; p99 {})",
                ms(s.p50),
                e.issue_p50_ms,
                if p50 <= e.issue_p50_ms {
                    "met"
                } else {
                    "missed"
                },
                ms(s.p99)
            ),
        ));
        let same = store_totals[k].is_some() && store_totals[k] == live_totals;
        rows.push(Row::judged(
            format!("6 store read (same query): {} totals vs live", e.name),
            None,
            (
                format!(
                    "{} (store {:?}, live {:?})",
                    if same { "equal" } else { "differ" },
                    store_totals[k].clone().unwrap_or_default(),
                    live_totals.clone().unwrap_or_default()
                ),
                f64::from(u8::from(same)),
            ),
            ("equal".into(), Target::Exactly(1.0)),
            ctx.margin,
        ));
        rows.push(Row::info(
            format!("6 fill ({})", e.name),
            None,
            e.fill.describe(),
        ));
        rows.push(Row::info(
            format!("6 store size per source ({})", e.name),
            None,
            e.fill.per_year(),
        ));
    }
    rows.push(Row::info(
        "6 live path: same query, no [store], fresh gateway each",
        Some(live),
        format!(
            "vendor requests per query: {} (information)",
            per_query.join(", ")
        ),
    ));
    Ok(rows)
}

/// The largest increase of a counter over any 60 s, from `(when, count)` samples taken in
/// order (a run shorter than a minute: its whole increase).
fn peak_per_minute(samples: &[(Instant, u64)]) -> u64 {
    let mut peak = 0;
    for (j, (t, c)) in samples.iter().enumerate() {
        // The last sample at least a minute before this one, else the first.
        let from = samples[..j]
            .iter()
            .rev()
            .find(|(s, _)| t.duration_since(*s) >= Duration::from_secs(60))
            .or(samples.first())
            .map_or(*c, |(_, n)| *n);
        peak = peak.max(c - from);
    }
    peak
}

/// Scenario 7: three `serve` replicas on one PostgreSQL store (filled first through a second,
/// unlimited DigitalOcean simulator over the same data) and one set of simulators, the
/// DigitalOcean one with its 250/min limit; the same 20 distinct queries (the last 6 h to 5 d
/// by hour, each up to the end of the current hour: stored hours plus the open tail) sent to
/// every replica at once. The simulator's counter is sampled every 250 ms from before the
/// replicas start to after the last answer.
pub async fn replicas(ctx: &Ctx, data: &Arc<Dataset>, pg: &Cluster) -> Result<Vec<Row>, String> {
    let pg = match pg {
        Ok(pg) => pg,
        Err(why) => {
            return Ok(vec![Row::info(
                "7 replicas on one PostgreSQL store",
                None,
                format!("not run: {why}"),
            )]);
        }
    };
    let url = pg.database("s7")?;
    let limited = usage_sim::start_digitalocean(data.clone(), DoOptions::default(), None)
        .await
        .map_err(io_err("DigitalOcean simulator"))?;
    let cbk = usage_sim::start_chatbotkit(data.clone(), None)
        .await
        .map_err(io_err("ChatBotKit simulator"))?;
    // The replicas keep the last 7 days stored: fill them first, at an unlimited pace.
    let store = store_table(&url, &[("backfill", "\"7d\"")]);
    {
        let unlimited = unlimited_do(data).await?;
        let mut spec = ctx.config(
            64 * MIB,
            vec![
                do_source(&unlimited).raw("rate_limit_per_minute", "1000000"),
                cbk_source(&cbk),
            ],
        )?;
        spec.store = Some(store.clone());
        let (lines, wall) = sync(ctx, "s7-sync", &spec, "7d", None).await?;
        let parts: Vec<String> = lines
            .iter()
            .map(|l| format!("{} {} h, {} requests", l.source, l.hours, l.requests))
            .collect();
        println!(
            "  filled the last 7 days: {} in {:.0} s",
            parts.join("; "),
            wall.as_secs_f64()
        );
        unlimited.stop().await;
    }
    let mut counts: Vec<(Instant, u64)> = Vec::new();
    let work = async {
        let mut gateways = Vec::new();
        for r in 0..REPLICAS {
            // The deployed defaults: DigitalOcean's 250/min budget per replica.
            let mut spec = ctx.config(64 * MIB, vec![do_source(&limited), cbk_source(&cbk)])?;
            spec.store = Some(store.clone());
            gateways.push(ctx.gateway(&format!("s7-replica-{r}"), &spec).await?);
        }
        let hour = floor_hour(Utc::now());
        let (do_before, cbk_before) = (limited.total_calls(), cbk.total_calls());
        let mut latencies = Vec::new();
        let mut ok = 0u64;
        let mut reported: BTreeMap<String, u64> = BTreeMap::new();
        let started = Instant::now();
        for i in 0..DISTINCT_QUERIES {
            let start = hour - chrono::Duration::hours(6 * (i.cast_signed() + 1));
            let query = format!(
                "/v1/usage?start={}&end={}&bucket=hour&group_by=source,agent",
                rfc3339(start),
                rfc3339(hour + chrono::Duration::hours(1))
            );
            let answers = join_all(
                gateways
                    .iter()
                    .map(|(gw, auth)| timed(&ctx.client, format!("{}{query}", gw.base), auth)),
            )
            .await;
            for (took, answer) in answers {
                latencies.push(took);
                let Some(a) = answer.filter(|a| a.status.is_success()) else {
                    continue;
                };
                ok += 1;
                for (source, n) in upstream_requests(&a.body).unwrap_or_default() {
                    *reported.entry(source).or_default() += n;
                }
            }
        }
        let wall = started.elapsed();
        let seen = (
            limited.total_calls() - do_before,
            cbk.total_calls() - cbk_before,
        );
        for (gw, _) in gateways {
            gw.stop();
        }
        let n = latencies.len() as u64;
        Ok::<_, String>((
            Summary::from_samples(latencies, n - ok, wall),
            ok,
            reported,
            seen,
        ))
    };
    let sampler = async {
        loop {
            counts.push((Instant::now(), limited.total_calls()));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let outcome = tokio::select! {
        r = work => r,
        () = sampler => unreachable!("the sampler never ends"),
    };
    counts.push((Instant::now(), limited.total_calls()));
    limited.stop().await;
    cbk.stop().await;
    let (load, ok, reported, (do_seen, cbk_seen)) = outcome?;
    let peak = peak_per_minute(&counts);
    let sent = REPLICAS as u64 * DISTINCT_QUERIES;
    let per = |n: u64| n as f64 / DISTINCT_QUERIES as f64;
    let from_answers: Vec<String> = reported
        .iter()
        .map(|(s, n)| format!("{s} {:.1}", per(*n)))
        .collect();
    Ok(vec![
        Row::judged(
            "7 replicas: 3 gateways, one PostgreSQL store, 20 distinct queries each",
            Some(load),
            (format!("{ok} of {sent} answered 200"), ok as f64),
            (format!("{sent}"), Target::Exactly(sent as f64)),
            ctx.margin,
        ),
        Row::info(
            "7 replicas (same queries): vendor requests per distinct query, 3 replicas summed",
            None,
            format!(
                "answers' upstream_requests: {}; simulators' counters: do {:.1}, cbk {:.1} (agent listing and syncers included)",
                from_answers.join(", "),
                per(do_seen),
                per(cbk_seen)
            ),
        ),
        Row::judged(
            "7 replicas (whole run): DigitalOcean simulator, requests in any 60 s",
            None,
            (format!("{peak} at most"), peak as f64),
            (
                format!("<= {DO_LIMIT_PER_MINUTE} (its limit)"),
                Target::AtMost(DO_LIMIT_PER_MINUTE),
            ),
            0.0,
        ),
    ])
}

/// Scenario 8: `usage-gateway sync --since 90d` of one DigitalOcean source (the bench data's 20
/// agents, discovered) into a fresh SQLite store, at `rate_limit_per_minute` 60 000 with the
/// default `budget_share` 0.5 and an unlimited simulator: the requests, the time, the pace
/// against the allowed share, and the time the same requests take at DigitalOcean's 250/min.
pub async fn backfill(ctx: &Ctx, data: &Arc<Dataset>) -> Result<Vec<Row>, String> {
    let sim = unlimited_do(data).await?;
    let agents = data.digitalocean.agents().len() as u64;
    let mut spec = ctx.config(
        64 * MIB,
        vec![do_source(&sim).raw("rate_limit_per_minute", format!("{BACKFILL_RATE}"))],
    )?;
    let db = ctx.dir.join("s8-store.sqlite");
    spec.store = Some(store_table(&db.display().to_string(), &[]));
    let before = sim.calls("do.usage");
    let (lines, wall) = sync(ctx, "s8-sync", &spec, "90d", Some("do")).await?;
    let usage_calls = sim.calls("do.usage") - before;
    sim.stop().await;
    let line = lines
        .into_iter()
        .find(|l| l.source == "do")
        .ok_or("`usage-gateway sync` printed no line for do")?;
    let minutes = wall.as_secs_f64() / 60.0;
    let pace = line.requests as f64 / minutes;
    let allowed = BACKFILL_RATE * BUDGET_SHARE;
    let real = line.requests as f64 / REAL_SYNC_PER_MINUTE;
    println!(
        "  {} hours, {} vendor requests in {:.1} s",
        line.hours,
        line.requests,
        wall.as_secs_f64()
    );
    Ok(vec![
        Row::judged(
            "8 backfill: sync --since 90d, DO 20 agents, 60 000/min x budget_share 0.5",
            None,
            (
                format!(
                    "{} requests for {} hours in {:.0} s: {pace:.0}/min = {:.2} x the allowed {allowed:.0}/min",
                    line.requests,
                    line.hours,
                    wall.as_secs_f64(),
                    pace / allowed
                ),
                pace,
            ),
            (
                format!("<= {allowed:.0}/min (the syncer's share)"),
                Target::AtMost(allowed),
            ),
            ctx.margin,
        ),
        Row::judged(
            "8 backfill (same run): usage requests the simulator saw",
            None,
            (
                format!("{usage_calls} (the summary says {})", line.requests),
                usage_calls as f64,
            ),
            (
                format!(
                    "{} = {} hours x {agents} agents",
                    line.hours * agents,
                    line.hours
                ),
                Target::Exactly((line.hours * agents) as f64),
            ),
            ctx.margin,
        ),
        Row::info(
            "8 backfill at DigitalOcean's 250/min x 0.5 (extrapolated)",
            None,
            format!(
                "{} requests / {REAL_SYNC_PER_MINUTE:.0} per minute = {:.1} h ({:.0} min)",
                line.requests,
                real / 60.0,
                real
            ),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_per_minute_slides_over_the_samples() {
        let t0 = Instant::now();
        let at = |s: u64, n: u64| (t0 + Duration::from_secs(s), n);
        // Shorter than a minute: the whole increase.
        assert_eq!(peak_per_minute(&[at(0, 5), at(30, 50)]), 45);
        // 200 in the first minute, then 100 in each later one.
        let samples = [
            at(0, 0),
            at(30, 150),
            at(60, 200),
            at(90, 250),
            at(120, 300),
        ];
        assert_eq!(peak_per_minute(&samples), 200);
        assert_eq!(peak_per_minute(&[]), 0);
    }

    #[test]
    fn hours_are_floored_in_utc() {
        let t = DateTime::parse_from_rfc3339("2026-03-01T13:17:42Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339(floor_hour(t)), "2026-03-01T13:00:00Z");
    }
}
