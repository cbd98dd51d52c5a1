//! Targets, verdicts with a noise margin, and the result table.

use std::fmt::Write as _;

use crate::stats::{Summary, ms};

/// A target a figure must meet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The figure must be at most this.
    AtMost(f64),
    /// The figure must be at least this.
    AtLeast(f64),
    /// The figure must be exactly this (counts: no noise margin applies).
    Exactly(f64),
}

/// The outcome of one figure against its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The target holds.
    Pass,
    /// The target is missed, but by no more than the noise margin (does not fail the command).
    Noise,
    /// The target is missed by more than the noise margin (fails the command).
    Fail,
}

impl Verdict {
    /// Returns the table text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Noise => "PASS (within noise)",
            Self::Fail => "FAIL",
        }
    }
}

impl Target {
    /// Judges `value` with a relative noise `margin` (0.1 = 10 %).
    pub fn judge(self, value: f64, margin: f64) -> Verdict {
        let (holds, within) = match self {
            Self::AtMost(t) => (value <= t, value <= t * (1.0 + margin)),
            Self::AtLeast(t) => (value >= t, value >= t * (1.0 - margin)),
            Self::Exactly(t) => ((value - t).abs() < 1e-9, false),
        };
        match (holds, within) {
            (true, _) => Verdict::Pass,
            (false, true) => Verdict::Noise,
            (false, false) => Verdict::Fail,
        }
    }
}

/// One line of the result table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Scenario number and what the line measures.
    pub scenario: String,
    /// Latency and throughput figures of the line's load, when it had one.
    pub load: Option<Summary>,
    /// The figure compared with the target (or an informative figure).
    pub figure: String,
    /// The target, as text.
    pub target: String,
    /// The verdict (`None` for informative lines).
    pub verdict: Option<Verdict>,
}

impl Row {
    /// Creates an informative line with no target.
    pub fn info(scenario: impl Into<String>, load: Option<Summary>, figure: String) -> Self {
        Self {
            scenario: scenario.into(),
            load,
            figure,
            target: "-".into(),
            verdict: None,
        }
    }

    /// Creates a judged line; a load with errors fails whatever the figure.
    pub fn judged(
        scenario: impl Into<String>,
        load: Option<Summary>,
        (figure, value): (String, f64),
        (target_text, target): (String, Target),
        margin: f64,
    ) -> Self {
        let errors = load.as_ref().map_or(0, |l| l.errors);
        let verdict = if errors > 0 {
            Verdict::Fail
        } else {
            target.judge(value, margin)
        };
        Self {
            scenario: scenario.into(),
            load,
            figure: if errors > 0 {
                format!("{figure} ({errors} errors)")
            } else {
                figure
            },
            target: target_text,
            verdict: Some(verdict),
        }
    }
}

/// Reports whether any line failed.
pub fn any_failed(rows: &[Row]) -> bool {
    rows.iter().any(|r| r.verdict == Some(Verdict::Fail))
}

/// Renders the lines as a Markdown table (also readable as plain text).
pub fn table(rows: &[Row]) -> String {
    let header = [
        "scenario", "p50", "p99", "req/s", "errors", "figure", "target", "result",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            let (p50, p99, rps, errors) = r.load.as_ref().map_or_else(
                || ("-".into(), "-".into(), "-".into(), "-".into()),
                |l| {
                    (
                        ms(l.p50),
                        ms(l.p99),
                        format!("{:.0}", l.rps),
                        l.errors.to_string(),
                    )
                },
            );
            [
                r.scenario.clone(),
                p50,
                p99,
                rps,
                errors,
                r.figure.clone(),
                r.target.clone(),
                r.verdict.map_or("-", Verdict::as_str).to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, s) in widths.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, c: &[String]| {
        out.push('|');
        for (s, w) in c.iter().zip(widths) {
            let pad = w - s.chars().count();
            let _ = write!(out, " {s}{} |", " ".repeat(pad));
        }
        out.push('\n');
    };
    line(&mut out, &header.map(str::to_owned));
    out.push('|');
    for w in widths {
        let _ = write!(out, "{}|", "-".repeat(w + 2));
    }
    out.push('\n');
    for c in &cells {
        line(&mut out, c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn margins_soften_only_near_misses() {
        let m = 0.1;
        assert_eq!(Target::AtMost(53.0).judge(52.0, m), Verdict::Pass);
        assert_eq!(Target::AtMost(53.0).judge(55.0, m), Verdict::Noise);
        assert_eq!(Target::AtMost(53.0).judge(60.0, m), Verdict::Fail);
        assert_eq!(Target::AtLeast(0.7).judge(0.71, m), Verdict::Pass);
        assert_eq!(Target::AtLeast(0.7).judge(0.65, m), Verdict::Noise);
        assert_eq!(Target::AtLeast(0.7).judge(0.6, m), Verdict::Fail);
        assert_eq!(Target::Exactly(12.0).judge(12.0, m), Verdict::Pass);
        assert_eq!(Target::Exactly(12.0).judge(13.0, m), Verdict::Fail);
        // A figure that could not be computed never passes.
        assert_eq!(Target::Exactly(12.0).judge(f64::NAN, m), Verdict::Fail);
        assert_eq!(Target::AtMost(53.0).judge(f64::NAN, m), Verdict::Fail);
    }

    #[test]
    fn errors_fail_a_line_and_the_command() {
        let load = Summary {
            requests: 10,
            errors: 2,
            p50: Duration::from_millis(1),
            p99: Duration::from_millis(2),
            rps: 5.0,
            wall: Duration::from_secs(2),
        };
        let row = Row::judged(
            "2 fan-out",
            Some(load),
            ("p50 1 ms".into(), 1.0),
            ("<= 53 ms".into(), Target::AtMost(53.0)),
            0.1,
        );
        assert_eq!(row.verdict, Some(Verdict::Fail));
        assert!(row.figure.contains("2 errors"));
        assert!(any_failed(&[row]));
        assert!(!any_failed(&[Row::info("x", None, "y".into())]));
    }

    #[test]
    fn renders_an_aligned_markdown_table() {
        let rows = vec![
            Row::info("1 baseline", None, "-".into()),
            Row::judged(
                "1 gateway",
                None,
                ("0.80 x baseline".into(), 0.8),
                (">= 0.70 x baseline".into(), Target::AtLeast(0.7)),
                0.1,
            ),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("| scenario"));
        assert!(lines[1].starts_with("|---"));
        assert!(lines[3].contains("PASS"));
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{t}");
    }
}
