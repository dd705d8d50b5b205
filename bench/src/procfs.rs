//! A running process's figures as Linux's `/proc` reports them: resident memory, CPU time (of
//! the whole process, or of its threads by name) and open file descriptors. A process that is
//! gone, or a field that is missing, reads as zero: a benchmark prints what it can and goes on.

use std::path::Path;
use std::time::Duration;

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, ...), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    parse_status_kib(&status, field)
}

/// Resident memory (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// Peak resident memory (`VmHWM`), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM")
}

/// CPU time (user + system) the process has used, its exited threads included.
pub fn cpu_time(pid: u32) -> Duration {
    ticks_to_duration(stat_ticks(Path::new(&format!("/proc/{pid}/stat"))))
}

/// CPU time (user + system) of the process's live threads whose name starts with `prefix`,
/// or of all of them when `prefix` is empty.
pub fn threads_cpu_time(pid: u32, prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let ticks = tasks
        .flatten()
        .filter(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            comm.trim().starts_with(prefix)
        })
        .map(|task| stat_ticks(&task.path().join("stat")))
        .sum();
    ticks_to_duration(ticks)
}

/// File descriptors the process has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn parse_status_kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn stat_ticks(path: &Path) -> u64 {
    parse_stat_ticks(&std::fs::read_to_string(path).unwrap_or_default())
}

/// utime + stime of a `stat` line, in clock ticks.
fn parse_stat_ticks(stat: &str) -> u64 {
    // The name (field 2) is in parentheses and may hold spaces: count fields after its
    // closing one, where state is field 3, utime 14 and stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(14) + field(15)
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf only reads a configuration value.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // USER_HZ: Linux fixes it at 100 for user space.
    let hz = u64::try_from(hz).ok().filter(|&hz| hz > 0).unwrap_or(100);
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_status_kib_should_read_the_named_field_only() {
        let status = "Name:\tskiff\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\nVmRSSx:\t 1 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), 10240);
        assert_eq!(parse_status_kib(status, "VmHWM"), 20480);
        assert_eq!(parse_status_kib(status, "VmSwap"), 0);
    }

    #[test]
    fn parse_stat_ticks_should_add_utime_and_stime_after_a_name_with_spaces() {
        let stat = "42 (tokio rt) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 9 0 100";
        assert_eq!(parse_stat_ticks(stat), 12);
        assert_eq!(parse_stat_ticks(""), 0);
    }

    #[test]
    fn readers_should_see_this_process() {
        let pid = std::process::id();
        // The peak is read after the current size: other tests' threads may grow the process
        // in between, and only a peak read later is sure to cover it.
        let rss = rss_kib(pid);
        assert!(rss > 0);
        assert!(peak_rss_kib(pid) >= rss);
        assert!(open_fds(pid) > 0);
        // Burn CPU on this (live) thread until a tick is counted; bounded on a busy machine.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        // Both readers must have seen a tick (each file is updated on its own).
        while (threads_cpu_time(pid, "") == Duration::ZERO || cpu_time(pid) == Duration::ZERO)
            && std::time::Instant::now() < deadline
        {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        assert!(cpu_time(pid) > Duration::ZERO);
        assert!(threads_cpu_time(pid, "") > Duration::ZERO);
        assert_eq!(threads_cpu_time(pid, "no thread is named like this"), Duration::ZERO);
    }

    #[test]
    fn readers_should_read_zero_for_a_missing_process() {
        let pid = u32::MAX;
        assert_eq!(rss_kib(pid), 0);
        assert_eq!(cpu_time(pid), Duration::ZERO);
        assert_eq!(threads_cpu_time(pid, ""), Duration::ZERO);
        assert_eq!(open_fds(pid), 0);
    }
}
