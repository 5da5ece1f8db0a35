//! CPU time from /proc, for the benchmarks that price what a process or the machine spends.

use std::time::Duration;

/// The user and system CPU time `pid` has used so far.
pub fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the ')'.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The CPU time every core of the machine has spent busy so far (all but idle and I/O wait).
#[allow(dead_code)] // not every benchmark prices the whole machine
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Duration::from_millis(total.saturating_sub(idle) * 10)
}

/// The CPU time used so far by each running process whose command is `name` (a database
/// server's backends, say), by pid.
#[allow(dead_code)] // not every benchmark prices a server of its own
pub fn processes_named(name: &str) -> std::collections::HashMap<u32, Duration> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Default::default();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .map(|pid| (pid, process_cpu(pid)))
        .collect()
}

/// The CPU time `name`'s processes used between two [`processes_named`] readings (a process
/// started in between counts from zero).
#[allow(dead_code)]
pub fn used_between(
    before: &std::collections::HashMap<u32, Duration>,
    after: &std::collections::HashMap<u32, Duration>,
) -> Duration {
    after
        .iter()
        .map(|(pid, end)| end.saturating_sub(before.get(pid).copied().unwrap_or_default()))
        .sum()
}
