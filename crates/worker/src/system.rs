//! CPU and memory use of the worker process as percentages of what the
//! process may use: the cgroup's CPU quota and memory limit when one is
//! set (containers, Kubernetes), otherwise the host's cores and memory.
//! Read from `/proc` and `/sys/fs/cgroup`; on systems without them the
//! values are `None`.

use std::time::Instant;

/// Samples the process's CPU time between calls.
#[derive(Debug)]
pub struct ProcessSampler {
    last: Option<(Instant, f64)>,
    cpus: f64,
    memory_limit_bytes: Option<f64>,
}

impl Default for ProcessSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessSampler {
    pub fn new() -> Self {
        ProcessSampler { last: None, cpus: available_cpus(), memory_limit_bytes: memory_limit_bytes() }
    }

    /// CPU use since the previous call, as a percentage of the CPUs the
    /// process may use (100 = all of them busy). `None` on the first call.
    pub fn cpu_percent(&mut self) -> Option<f64> {
        let now = Instant::now();
        let cpu_seconds = process_cpu_seconds()?;
        let previous = self.last.replace((now, cpu_seconds));
        let (then, previous_seconds) = previous?;
        let wall = now.duration_since(then).as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        Some(((cpu_seconds - previous_seconds) / wall / self.cpus * 100.0).max(0.0))
    }

    /// Resident memory as a percentage of the memory limit.
    pub fn memory_percent(&self) -> Option<f64> {
        let limit = self.memory_limit_bytes?;
        let resident = resident_bytes()?;
        Some(resident / limit * 100.0)
    }
}

fn clock_ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux architecture unibench builds for.
    100.0
}

fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces; utime and stime are fields 14 and 15 of the whole line.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_second())
}

fn resident_bytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024.0)
}

fn available_cpus() -> f64 {
    let host = std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0);
    let quota = std::fs::read_to_string("/sys/fs/cgroup/cpu.max").ok().and_then(|text| {
        let mut parts = text.split_whitespace();
        let quota: f64 = parts.next()?.parse().ok()?;
        let period: f64 = parts.next()?.parse().ok()?;
        (period > 0.0).then_some(quota / period)
    });
    match quota {
        Some(cpus) if cpus > 0.0 => cpus.min(host),
        _ => host,
    }
}

fn memory_limit_bytes() -> Option<f64> {
    let host = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
        let kilobytes: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kilobytes * 1024.0)
    });
    let cgroup =
        std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|text| text.trim().parse::<f64>().ok());
    match (cgroup, host) {
        (Some(limit), Some(host)) => Some(limit.min(host)),
        (limit, host) => limit.or(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let mut sampler = ProcessSampler::new();
        assert_eq!(sampler.cpu_percent(), None, "the first call has no interval");
        let mut spin = 0u64;
        let start = Instant::now();
        while start.elapsed().as_millis() < 50 {
            spin = spin.wrapping_add(1);
        }
        let cpu = sampler.cpu_percent().expect("Linux exposes /proc/self/stat");
        assert!((0.0..=100.0 * 64.0).contains(&cpu), "{cpu} after {spin} spins");
        let memory = sampler.memory_percent().expect("Linux exposes memory figures");
        assert!(memory > 0.0 && memory < 100.0, "{memory}");
    }
}
