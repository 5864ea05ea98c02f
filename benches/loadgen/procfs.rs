//! The load generator's /proc.

use super::*;

#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcSample {
    /// utime + stime of all threads, in clock ticks (USER_HZ = 100).
    pub(crate) cpu_ticks: u64,
    pub(crate) rss_kib: u64,
    /// Time its threads spent runnable but waiting for a CPU (ns, summed
    /// over the live threads, /proc/<pid>/task/*/schedstat): how much other
    /// processes on the same core got in the way.
    pub(crate) wait_ns: u64,
    pub(crate) at: Instant,
}

pub(crate) const TICKS_PER_SEC: f64 = 100.0;

pub(crate) fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may contain spaces; field 3 is first.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut wait_ns = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
                wait_ns += text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|w| w.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Some(ProcSample {
        cpu_ticks: utime + stime,
        rss_kib,
        wait_ns,
        at: Instant::now(),
    })
}

/// One sample of several processes (the nodes of a cluster), summed: CPU,
/// RSS and run-queue wait. `None` if there is none or one is gone.
pub(crate) fn proc_sample_sum(pids: &[u32]) -> Option<ProcSample> {
    let mut samples = pids.iter().map(|&pid| proc_sample(pid));
    let mut total = samples.next()??;
    for sample in samples {
        let sample = sample?;
        total.cpu_ticks += sample.cpu_ticks;
        total.rss_kib += sample.rss_kib;
        total.wait_ns += sample.wait_ns;
    }
    Some(total)
}

/// Run-queue wait between two samples, in milliseconds.
pub(crate) fn wait_ms(a: &ProcSample, b: &ProcSample) -> f64 {
    b.wait_ns.saturating_sub(a.wait_ns) as f64 / 1e6
}

/// CPU used between two samples, in seconds.
pub(crate) fn cpu_secs(a: &ProcSample, b: &ProcSample) -> f64 {
    b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / TICKS_PER_SEC
}

/// The process listening on `port` (TCP, IPv4 or IPv6): its socket's inode
/// from /proc/net/tcp*, then the process holding that inode in /proc/*/fd.
pub(crate) fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let local_port = cols[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                inodes.push(format!("socket:[{}]", cols[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| link.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

pub(crate) fn port_of(url: &str) -> Option<u16> {
    url::Url::parse(url).ok()?.port_or_known_default()
}

pub(crate) fn describe_process(pid: u32) -> Value {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("")
        .trim()
        .to_owned();
    json!({"pid": pid, "comm": comm.trim(), "cmdline": cmdline, "cpus_allowed": allowed})
}

pub(crate) fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cores_online": cpuinfo.lines().filter(|l| l.starts_with("processor")).count(),
        "kernel": kernel.trim(),
        "memory_gib": (mem_kib as f64 / 1048576.0 * 10.0).round() / 10.0,
    })
}
