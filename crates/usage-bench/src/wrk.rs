//! Runs `wrk` (a fixed-duration, fixed-concurrency HTTP load written in C) and reads the summary
//! that a small Lua `done` hook prints as one JSON line.
//!
//! `wrk` is used rather than a load generator built here because it costs the shared cores
//! little per request: with the generator on the same two cores as the server, a heavier
//! generator would take CPU from the server and flatten the gateway-to-baseline ratio.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::stats::Summary;

/// The Lua hook: after the run, one JSON line with the counts and percentiles (microseconds).
const DONE_HOOK: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\n{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;

/// How to run `wrk`.
#[derive(Debug, Clone)]
pub struct Wrk {
    path: PathBuf,
    script: PathBuf,
}

/// One load run.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    /// Target URL (on 127.0.0.1).
    pub url: &'a str,
    /// Connections kept busy.
    pub connections: usize,
    /// Generator threads.
    pub threads: usize,
    /// Duration of the run.
    pub duration: Duration,
    /// Request headers, as `Name: value`.
    pub headers: &'a [String],
}

impl Wrk {
    /// Writes the summary hook into `dir` and returns a runner for the `wrk` at `path`.
    pub fn new(path: &Path, dir: &Path) -> Result<Self, String> {
        let script = dir.join("wrk-summary.lua");
        std::fs::write(&script, DONE_HOOK)
            .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            script,
        })
    }

    /// Builds the command line of a run.
    fn command(&self, run: &Run<'_>) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg("-t")
            .arg(run.threads.clamp(1, run.connections.max(1)).to_string())
            .arg("-c")
            .arg(run.connections.to_string())
            .arg("-d")
            // wrk reads whole seconds (`s`, `m`, `h`).
            .arg(format!("{}s", run.duration.as_secs().max(1)))
            // wrk's default: an answer 2 s or more after its request is a timeout, counted among
            // the errors that fail a line (see BENCHMARKS.md, "Socket timeouts under load").
            .arg("--timeout")
            .arg("2s")
            .arg("-s")
            .arg(&self.script);
        for h in run.headers {
            cmd.arg("-H").arg(h);
        }
        cmd.arg(run.url);
        cmd
    }

    /// Runs the load (blocking) and returns its summary.
    pub fn run(&self, run: &Run<'_>) -> Result<Summary, String> {
        let out = self
            .command(run)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run wrk: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "wrk failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        parse(&String::from_utf8_lossy(&out.stdout))
    }
}

/// Reads the hook's JSON line: requests per second, p50/p99, and every response that was not a
/// 2xx/3xx or did not arrive (connect, read, write errors and timeouts).
pub fn parse(stdout: &str) -> Result<Summary, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("wrk printed no summary line")?;
    let v: Value = serde_json::from_str(line).map_err(|e| format!("wrk summary: {e}"))?;
    let num = |k: &str| -> Result<u64, String> {
        v.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("wrk summary has no count `{k}`"))
    };
    let requests = num("requests")?;
    let errors = ["connect", "read", "write", "status", "timeout"]
        .iter()
        .map(|k| num(k))
        .sum::<Result<u64, String>>()?;
    let wall = Duration::from_micros(num("duration_us")?);
    Ok(Summary {
        requests,
        errors,
        p50: Duration::from_micros(num("p50_us")?),
        p99: Duration::from_micros(num("p99_us")?),
        rps: if wall.is_zero() {
            0.0
        } else {
            requests as f64 / wall.as_secs_f64()
        },
        wall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 3s test @ http://127.0.0.1:1/v1/usage\n  2 threads and 32 connections\n\
        \n{\"requests\":150000,\"duration_us\":3000000,\"connect\":0,\"read\":2,\"write\":0,\"status\":3,\"timeout\":0,\"p50_us\":310,\"p99_us\":1900}\n";

    #[test]
    fn reads_the_summary_line() {
        let s = parse(SAMPLE).unwrap();
        assert_eq!(s.requests, 150_000);
        assert_eq!(s.errors, 5);
        assert!((s.rps - 50_000.0).abs() < 1e-6);
        assert_eq!(s.p50, Duration::from_micros(310));
        assert_eq!(s.p99, Duration::from_micros(1900));
        assert_eq!(s.wall, Duration::from_secs(3));
    }

    #[test]
    fn rejects_output_without_figures() {
        assert!(parse("").is_err());
        assert!(parse("{\"requests\": 1}").is_err());
        assert!(parse("{not json").is_err());
    }

    #[test]
    fn builds_a_bounded_command_line() {
        let wrk = Wrk {
            path: PathBuf::from("wrk"),
            script: PathBuf::from("/tmp/s.lua"),
        };
        let headers = vec!["Authorization: Bearer t".to_owned()];
        let cmd = wrk.command(&Run {
            url: "http://127.0.0.1:1/v1/usage",
            connections: 32,
            threads: 2,
            duration: Duration::from_secs(5),
            headers: &headers,
        });
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-t",
                "2",
                "-c",
                "32",
                "-d",
                "5s",
                "--timeout",
                "2s",
                "-s",
                "/tmp/s.lua",
                "-H",
                "Authorization: Bearer t",
                "http://127.0.0.1:1/v1/usage"
            ]
        );
    }
}
