//! Runs `oha` (a fixed-duration, fixed-concurrency HTTP load) and reads its JSON summary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::stats::Summary;

/// How to run `oha`.
#[derive(Debug, Clone)]
pub struct Oha {
    path: PathBuf,
    json_flag: Vec<&'static str>,
}

/// One load run.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    /// Target URL (on 127.0.0.1).
    pub url: &'a str,
    /// Connections kept busy.
    pub connections: usize,
    /// Duration of the run.
    pub duration: Duration,
    /// Request headers, as `Name: value`.
    pub headers: &'a [String],
}

impl Oha {
    /// Inspects `oha --help` to pick the JSON output flag of this version.
    pub fn new(path: &Path) -> Result<Self, String> {
        let help = Command::new(path)
            .arg("--help")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {} --help: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&help.stdout);
        let json_flag = if text.contains("--output-format") {
            vec!["--output-format", "json"]
        } else {
            vec!["--json"]
        };
        Ok(Self {
            path: path.to_path_buf(),
            json_flag,
        })
    }

    /// Builds the command line of a run.
    fn command(&self, run: &Run<'_>) -> Command {
        let mut cmd = Command::new(&self.path);
        // `-w`: requests still running at the deadline finish and count, instead of being
        // reported as aborted (errors).
        cmd.arg("--no-tui")
            .arg("-w")
            .args(&self.json_flag)
            .arg("-z")
            .arg(format!("{}ms", run.duration.as_millis()))
            .arg("-c")
            .arg(run.connections.to_string());
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
            .map_err(|e| format!("cannot run oha: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "oha failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        parse(&String::from_utf8_lossy(&out.stdout))
    }
}

/// Reads oha's JSON output: requests per second, p50/p99 (seconds) and every response that was
/// not a `200` or did not arrive (`errorDistribution`).
pub fn parse(json: &str) -> Result<Summary, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("oha output: {e}"))?;
    let num = |ptr: &str| -> Result<f64, String> {
        v.pointer(ptr)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("oha output has no number at {ptr}"))
    };
    let count = |ptr: &str| -> u64 {
        v.pointer(ptr)
            .and_then(Value::as_object)
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
    };
    let statuses = count("/statusCodeDistribution");
    let ok = v
        .pointer("/statusCodeDistribution/200")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let transport_errors = count("/errorDistribution");
    let wall = Duration::from_secs_f64(num("/summary/total")?.max(0.0));
    let secs = |ptr: &str| num(ptr).map(|s| Duration::from_secs_f64(s.max(0.0)));
    Ok(Summary {
        requests: statuses + transport_errors,
        errors: statuses - ok + transport_errors,
        p50: secs("/latencyPercentiles/p50")?,
        p99: secs("/latencyPercentiles/p99")?,
        rps: num("/summary/requestsPerSec")?,
        wall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "summary": {"successRate": 1.0, "total": 5.002, "slowest": 0.02, "fastest": 0.0001,
                  "average": 0.0011, "requestsPerSec": 28500.5, "totalData": 1000, "sizePerRequest": 4000,
                  "sizePerSec": 1.0},
      "responseTimeHistogram": {"0.001": 10},
      "latencyPercentiles": {"p10": 0.0004, "p25": 0.0006, "p50": 0.0009, "p75": 0.0012,
                             "p90": 0.0016, "p95": 0.002, "p99": 0.0031, "p99.9": 0.006, "p99.99": 0.01},
      "rps": {"mean": 28000.0},
      "details": {},
      "statusCodeDistribution": {"200": 142500, "500": 3},
      "errorDistribution": {"connection closed": 2}
    }"#;

    #[test]
    fn reads_the_json_summary() {
        let s = parse(SAMPLE).unwrap();
        assert_eq!(s.requests, 142_505);
        assert_eq!(s.errors, 5);
        assert!((s.rps - 28_500.5).abs() < 1e-9);
        assert_eq!(s.p50, Duration::from_micros(900));
        assert_eq!(s.p99, Duration::from_micros(3100));
        assert_eq!(s.wall, Duration::from_secs_f64(5.002));
    }

    #[test]
    fn rejects_output_without_figures() {
        assert!(parse("{}").is_err());
        assert!(parse("not json").is_err());
    }

    #[test]
    fn builds_a_bounded_command_line() {
        let oha = Oha {
            path: PathBuf::from("oha"),
            json_flag: vec!["--output-format", "json"],
        };
        let headers = vec!["Authorization: Bearer t".to_owned()];
        let cmd = oha.command(&Run {
            url: "http://127.0.0.1:1/v1/usage",
            connections: 32,
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
                "--no-tui",
                "-w",
                "--output-format",
                "json",
                "-z",
                "5000ms",
                "-c",
                "32",
                "-H",
                "Authorization: Bearer t",
                "http://127.0.0.1:1/v1/usage"
            ]
        );
    }
}
