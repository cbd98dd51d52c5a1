//! `usage-bench`: the benchmark command of issue 9.
//!
//! ```sh
//! cargo run --release -p usage-bench
//! ```
//!
//! It installs `wrk` when missing, builds `usage-gateway` in release mode, starts the vendor
//! simulators in-process and the gateway as a subprocess on a generated config for each
//! scenario, drives load on 127.0.0.1 only, prints one table, and exits non-zero when a target
//! is missed by more than the noise margin. Every target is a ratio or a difference against a
//! reference measured in the same run (issue 20); absolute figures are printed for information.
//! See `BENCHMARKS.md`.

mod baseline;
mod calibration;
mod gateway;
mod load;
mod nginx;
mod postgres;
mod procfs;
mod report;
mod scenarios;
mod stats;
mod store;
mod tools;
mod wrk;

use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;

use crate::report::Row;
use crate::scenarios::{BigSims, Ctx};

/// Benchmarks usage-gateway against the targets of issue 9 (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "usage-bench", version)]
struct Args {
    /// Scenarios to run: 1 cache hit, 2 fan-out, 3 coalescing, 4 large data, 5 footprint; 6 store
    /// read path, 7 replicas, 8 backfill (the usage store, issue 26: about 10 minutes together,
    /// so not run by default).
    #[arg(long, value_delimiter = ',', default_values_t = [1u8, 2, 3, 4, 5])]
    scenarios: Vec<u8>,
    /// Relative noise margin in percent: a target missed by no more than this does not fail.
    #[arg(long, default_value_t = 10.0)]
    noise_margin: f64,
    /// Seconds of each throughput run in scenario 1 (ten runs plus two 1 s warm-ups).
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Uses this gateway binary instead of building `usage-gateway` in release mode.
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// `RUST_LOG` of the gateway; the figures use `info`, as deployed (e.g. `warn` shows what
    /// the per-request access log costs).
    #[arg(long, default_value = "info")]
    gateway_log: String,
}

/// Describes the machine: CPU model, cores, memory, kernel, load.
fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mem_kb: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let load = read("/proc/loadavg");
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{model}, {cores} CPUs available, {:.1} GiB RAM, Linux {kernel}, load average {} at start",
        mem_kb as f64 / (1024.0 * 1024.0),
        load.join(" ")
    )
}

/// A throwaway HS256 secret for this run (it never leaves the machine).
fn secret() -> String {
    let s = std::collections::hash_map::RandomState::new();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (0u8..4).fold(String::with_capacity(64), |mut out, i| {
        let _ = write!(out, "{:016x}", s.hash_one((i, now, std::process::id())));
        out
    })
}

async fn run_all(ctx: &Ctx, selected: &[u8]) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut push = |name: &str, result: Result<Vec<Row>, String>| match result {
        Ok(r) => rows.extend(r),
        Err(e) => {
            eprintln!("scenario {name} could not run: {e}");
            rows.push(Row::judged(
                name,
                None,
                (format!("did not run: {e}"), 0.0),
                ("runs".into(), report::Target::Exactly(1.0)),
                0.0,
            ));
        }
    };
    let has = |n: u8| selected.contains(&n);
    if has(1) {
        println!("\n[1] cache-hit throughput");
        push("1 cache hit", scenarios::cache_hit(ctx).await);
    }
    if has(2) {
        println!("\n[2] fan-out overhead");
        push("2 fan-out", scenarios::fan_out(ctx).await);
    }
    if has(3) {
        println!("\n[3] coalescing");
        push("3 coalescing", scenarios::coalescing(ctx).await);
    }
    if has(4) {
        println!("\n[4] large upstream data (DataSpec::bench)");
        match BigSims::start().await {
            Ok(big) => {
                push("4 large data", scenarios::large(ctx, &big).await);
                big.stop().await;
            }
            Err(e) => push("4 large data", Err(e)),
        }
    }
    if has(5) {
        println!("\n[5] footprint");
        push("5 footprint", scenarios::footprint(ctx).await);
    }
    if [6, 7, 8].iter().any(|n| has(*n)) {
        println!("\n[6-8] the usage store (DataSpec::bench)");
        match scenarios::bench_data().await {
            Ok((data, _)) => {
                // One throw-away cluster for scenarios 6 and 7, stopped when dropped.
                let pg = if has(6) || has(7) {
                    tokio::task::spawn_blocking(|| {
                        postgres::Postgres::start(&tools::workspace_root())
                    })
                    .await
                    .unwrap_or_else(|e| Err(format!("the PostgreSQL task failed: {e}")))
                } else {
                    Err("not needed".into())
                };
                if has(6) {
                    println!("\n[6] store read path");
                    push("6 store read", store::read_path(ctx, &data, &pg).await);
                }
                if has(7) {
                    println!("\n[7] replicas on one PostgreSQL store");
                    push("7 replicas", store::replicas(ctx, &data, &pg).await);
                }
                if has(8) {
                    println!("\n[8] backfill");
                    push("8 backfill", store::backfill(ctx, &data).await);
                }
                drop(pg);
            }
            Err(e) => push("6-8 usage store", Err(e)),
        }
    }
    rows
}

fn main() -> ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    let root = tools::workspace_root();
    let machine = machine();
    println!("usage-bench: {machine}");
    let bin = match args
        .gateway_bin
        .clone()
        .map_or_else(|| tools::build_gateway(&root), Ok)
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let dir = tools::target_dir(&root)
        .join("usage-bench")
        .join(format!("run-{stamp}"));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let wrk = if args.scenarios.contains(&1) {
        match tools::ensure_wrk().and_then(|p| wrk::Wrk::new(&p, &dir)) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let nginx = if args.scenarios.contains(&1) {
        match tools::ensure_nginx() {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    println!(
        "gateway: {}\nconfigs and gateway logs: {}",
        bin.display(),
        dir.display()
    );
    let client = match load::client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let ctx = Ctx {
        bin,
        dir: dir.clone(),
        secret: secret(),
        margin: args.noise_margin / 100.0,
        workers: std::thread::available_parallelism().map_or(1, usize::from),
        duration: Duration::from_secs(args.seconds.max(1)),
        wrk,
        nginx,
        client,
        log_filter: args.gateway_log.clone(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let rows = runtime.block_on(run_all(&ctx, &args.scenarios));
    drop(runtime);
    let table = report::table(&rows);
    let failed = report::any_failed(&rows);
    let summary = format!(
        "Machine: {machine}\nGateway: {} workers, RUST_LOG={}; noise margin: {}%; total time {:.0} s\n\n{table}",
        ctx.workers,
        args.gateway_log,
        args.noise_margin,
        started.elapsed().as_secs_f64()
    );
    println!("\n{summary}");
    let results = dir.join("results.md");
    if let Err(e) = std::fs::write(&results, &summary) {
        eprintln!("cannot write {}: {e}", results.display());
    } else {
        println!("written to {}", results.display());
    }
    if failed {
        println!("at least one target is missed by more than the noise margin");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
