//! Memory and CPU time of a process, read from `/proc/<pid>/status`, `/proc/<pid>/stat` and
//! `/proc/<pid>/task/<tid>/schedstat`.

use std::collections::BTreeMap;
use std::io;
use std::process::Command;
use std::time::Duration;

/// Resident memory of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident set size now, in bytes.
    pub rss: u64,
    /// `VmHWM`: the highest resident set size so far, in bytes.
    pub hwm: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid`.
pub fn memory(pid: u32) -> io::Result<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/status has no VmRSS/VmHWM"),
        )
    })
}

/// Parses the `VmRSS:` and `VmHWM:` lines (in kB) of a `/proc/<pid>/status` text.
pub fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let mut parts = line[name.len()..].split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(n * 1024),
            Some(_) => None,
        }
    };
    Some(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
    })
}

/// Reads the user plus system CPU time `pid` has used so far (all its threads).
pub fn cpu_time(pid: u32, ticks_per_second: u64) -> io::Result<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_stat_ticks(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat has no utime/stime"),
        )
    })?;
    Ok(ticks_to_duration(ticks, ticks_per_second))
}

/// The CPU time a process has used so far, read two ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSample {
    /// `utime + stime` of `/proc/<pid>/stat`: counts threads that have exited, but in clock
    /// ticks (10 ms here, a twentieth of a cold query of scenario 4).
    ticks: Duration,
    /// One clock tick.
    tick: Duration,
    /// Each live thread's time on a CPU in nanoseconds (first field of its `schedstat`), when
    /// the kernel keeps it.
    threads: Option<BTreeMap<u32, u64>>,
}

impl CpuSample {
    /// Returns the CPU time used between `earlier` and this sample: to the nanosecond from the
    /// threads' own clocks (threads started since count from zero), or in clock ticks when
    /// those miss time: a thread alive at `earlier` has exited, a thread id was reused (its
    /// clock went back), or the ticks moved more than two ticks beyond the nanoseconds (a
    /// thread started and exited in between).
    pub fn since(&self, earlier: &Self) -> Duration {
        let ticks = self.ticks.saturating_sub(earlier.ticks);
        let (Some(now), Some(then)) = (&self.threads, &earlier.threads) else {
            return ticks;
        };
        let mut ns: u64 = 0;
        for (tid, &before) in then {
            match now.get(tid) {
                Some(&after) if after >= before => ns += after - before,
                _ => return ticks,
            }
        }
        ns += now
            .iter()
            .filter(|(tid, _)| !then.contains_key(tid))
            .map(|(_, ns)| ns)
            .sum::<u64>();
        let precise = Duration::from_nanos(ns);
        if ticks > precise + 2 * self.tick {
            ticks
        } else {
            precise
        }
    }
}

/// Reads the CPU time `pid` has used so far (all its threads).
pub fn cpu_sample(pid: u32, ticks_per_second: u64) -> io::Result<CpuSample> {
    Ok(CpuSample {
        ticks: cpu_time(pid, ticks_per_second)?,
        tick: ticks_to_duration(1, ticks_per_second),
        threads: thread_times(pid),
    })
}

/// Each thread's time on a CPU, in nanoseconds; `None` when a thread's `schedstat` cannot be
/// read or parsed (then the clock ticks of `/proc/<pid>/stat` are used).
fn thread_times(pid: u32) -> Option<BTreeMap<u32, u64>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let entry = entry.ok()?;
        let tid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let text = std::fs::read_to_string(entry.path().join("schedstat")).ok()?;
        out.insert(tid, parse_schedstat(&text)?);
    }
    Some(out)
}

/// Returns the time on a CPU (first field, nanoseconds) of a `schedstat` line.
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The CPU time the calling thread has used so far (first field of
/// `/proc/thread-self/schedstat`, nanoseconds).
pub fn thread_cpu() -> io::Result<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    parse_schedstat(&text)
        .map(Duration::from_nanos)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "/proc/thread-self/schedstat has no run time",
            )
        })
}

/// Returns the processes whose parent is `pid` (from every `/proc/<pid>/stat`).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(e.path().join("stat")).ok()?;
            (parse_stat_parent(&text)? == pid).then_some(child)
        })
        .collect();
    out.sort_unstable();
    out
}

/// Returns the parent process id (field 4) of a `/proc/<pid>/stat` line.
pub fn parse_stat_parent(text: &str) -> Option<u32> {
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(4 - 3)?.parse().ok()
}

/// Returns `utime + stime` (fields 14 and 15, in clock ticks) of a `/proc/<pid>/stat` line.
///
/// The command name (field 2) may hold spaces and parentheses, so fields are counted from the
/// last `)`.
pub fn parse_stat_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    // After `)`: field 3 (state) is index 0, so field n is index n - 3.
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Converts clock ticks to a duration.
pub fn ticks_to_duration(ticks: u64, ticks_per_second: u64) -> Duration {
    let per = ticks_per_second.max(1);
    Duration::from_secs(ticks / per) + Duration::from_nanos((ticks % per) * 1_000_000_000 / per)
}

/// Asks `getconf CLK_TCK` for the clock tick rate of `/proc/<pid>/stat` (100 when it cannot).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n: &u64| n > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines_in_kilobytes() {
        let text =
            "Name:\tusage-gateway\nVmPeak:\t  900 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                rss: 10_240 * 1024,
                hwm: 20_480 * 1024
            })
        );
        assert_eq!(parse_status("Name:\tx\nVmRSS:\t1 kB\n"), None);
        assert_eq!(parse_status("VmRSS:\t1 MB\nVmHWM:\t1 kB\n"), None);
    }

    #[test]
    fn counts_stat_fields_after_the_command_name() {
        // A command name with spaces and a `)` must not shift the fields.
        let line = "4242 (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 1000000 2500 18446744073709551615";
        assert_eq!(parse_stat_ticks(line), Some(325));
        assert_eq!(parse_stat_parent(line), Some(1));
        assert_eq!(parse_stat_parent("4242 (x) S"), None);
        assert_eq!(parse_stat_ticks("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat_ticks("no parenthesis"), None);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let m = memory(pid).unwrap();
        assert!(m.rss > 0 && m.hwm >= m.rss);
        // Burn 60 ms of this thread's CPU (not of the wall clock, which a loaded machine
        // stretches), so that at least one tick is recorded.
        let burnt = thread_cpu().unwrap();
        let mut x = 0u64;
        while thread_cpu().unwrap().saturating_sub(burnt) < Duration::from_millis(60) {
            for _ in 0..10_000 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            }
        }
        assert_ne!(x, 1);
        assert!(cpu_time(pid, clock_ticks_per_second()).unwrap() > Duration::ZERO);
        let zero = CpuSample {
            ticks: Duration::ZERO,
            tick: Duration::from_secs(1),
            threads: Some(BTreeMap::new()),
        };
        let now = cpu_sample(pid, clock_ticks_per_second()).unwrap();
        assert!(now.since(&zero) >= Duration::from_millis(60));
        // This thread's own clock moves with what it burns (however long a loaded machine
        // takes to give it 20 ms), and never beyond the whole process's.
        let t0 = thread_cpu().unwrap();
        let started = std::time::Instant::now();
        while thread_cpu().unwrap().saturating_sub(t0) < Duration::from_millis(20) {
            assert!(started.elapsed() < Duration::from_secs(30));
            for _ in 0..10_000 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            }
        }
        assert_ne!(x, 1);
        let used = thread_cpu().unwrap().saturating_sub(t0);
        let process = cpu_sample(pid, clock_ticks_per_second())
            .unwrap()
            .since(&zero);
        assert!(
            used >= Duration::from_millis(20) && used <= process,
            "{used:?} {process:?}"
        );
    }

    #[test]
    fn cpu_time_between_samples() {
        let ms = Duration::from_millis;
        let sample = |ticks: u64, threads: Option<&[(u32, u64)]>| CpuSample {
            ticks: ms(ticks),
            tick: ms(10),
            threads: threads.map(|t| t.iter().copied().collect()),
        };
        let before = sample(100, Some(&[(1, 5_000_000), (2, 1_000_000)]));
        // Nanoseconds per thread, a new thread counted from zero.
        let after = sample(110, Some(&[(1, 9_000_000), (2, 3_500_000), (3, 250_000)]));
        assert_eq!(after.since(&before), Duration::from_nanos(6_750_000));
        // A thread exited: its time since is lost to schedstat, so ticks are used.
        let exited = sample(120, Some(&[(1, 9_000_000)]));
        assert_eq!(exited.since(&before), ms(20));
        assert_eq!(sample(130, None).since(&before), ms(30));
        // A thread id reused by a younger thread: its clock went back.
        let reused = sample(140, Some(&[(1, 9_000_000), (2, 500_000)]));
        assert_eq!(reused.since(&before), ms(40));
        // A thread that came and went in between: the ticks saw 50 ms, the threads 8.
        let came_and_went = sample(150, Some(&[(1, 10_000_000), (2, 4_000_000)]));
        assert_eq!(came_and_went.since(&before), ms(50));
        assert_eq!(
            parse_schedstat("246150957 21568138 705\n"),
            Some(246_150_957)
        );
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn finds_child_processes() {
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let kids = children(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(kids.contains(&child.id()), "{kids:?}");
    }

    #[test]
    fn converts_ticks() {
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2500));
        assert_eq!(ticks_to_duration(3, 1000), Duration::from_millis(3));
    }
}
