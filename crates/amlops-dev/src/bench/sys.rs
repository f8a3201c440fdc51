//! Process measurements from `/proc` (Linux): resident memory and CPU time per thread, so
//! the operator's CPU can be told apart from the in-process emulator's (which runs on its
//! own threads, named [`EMULATOR_THREAD`]). Elsewhere the readers return `None`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Thread-name prefix of the emulator's runtime.
pub const EMULATOR_THREAD: &str = "emulator";
/// Thread-name prefix of the operator's runtime.
pub const OPERATOR_THREAD: &str = "amlops-op";
/// Name of the memory sampler thread.
pub const SAMPLER_THREAD: &str = "bench-sampler";

fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak resident set size of process `pid` in bytes (`VmHWM`).
pub fn process_hwm_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|k| k * 1024)
}

/// User + system CPU seconds of process `pid`, all its threads (`/proc/{pid}/stat`, in
/// clock ticks of 1/100 s, the fixed `USER_HZ` of Linux's /proc).
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ')'.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Current resident set size in bytes (`VmRSS`).
pub fn rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

/// Peak resident set size of the process so far in bytes (`VmHWM`).
pub fn hwm_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`).
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// CPU time of every live thread, by thread id: (name, nanoseconds on CPU).
pub fn thread_cpu() -> BTreeMap<u64, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let name = std::fs::read_to_string(path.join("comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        // schedstat: time on CPU (ns), time waiting (ns), timeslices.
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()));
        if let Some(ns) = ns {
            out.insert(tid, (name, ns));
        }
    }
    out
}

/// CPU time spent between two [`thread_cpu`] snapshots, split into (operator, emulator).
/// Threads that ended in between are missed (the runtimes keep theirs alive).
pub fn cpu_split(
    before: &BTreeMap<u64, (String, u64)>,
    after: &BTreeMap<u64, (String, u64)>,
) -> (Duration, Duration) {
    let (mut op, mut emu) = (0u64, 0u64);
    for (tid, (name, ns)) in after {
        let prev = before.get(tid).map(|(_, n)| *n).unwrap_or(0);
        let d = ns.saturating_sub(prev);
        if name.starts_with(EMULATOR_THREAD) {
            emu += d;
        } else if !name.starts_with(SAMPLER_THREAD) {
            op += d;
        }
    }
    (Duration::from_nanos(op), Duration::from_nanos(emu))
}

/// Samples `VmRSS` every few milliseconds in a thread and keeps the maximum.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling every `every`.
    pub fn start(every: Duration) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_bytes().unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(SAMPLER_THREAD.into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Some(r) = rss_bytes() {
                        p.fetch_max(r, Ordering::Relaxed);
                    }
                    std::thread::sleep(every);
                }
            })
            .ok();
        Self { peak, stop, thread }
    }

    /// The largest `VmRSS` seen so far, in bytes.
    pub fn peak(&self) -> u64 {
        if let Some(r) = rss_bytes() {
            self.peak.fetch_max(r, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        if !std::path::Path::new("/proc/self/status").exists() {
            return;
        }
        let rss = rss_bytes().unwrap();
        assert!(rss > 0 && hwm_bytes().unwrap() >= rss);
        let before = thread_cpu();
        assert!(!before.is_empty());
        // Burn CPU on this (non-emulator) thread until the kernel's counter, in clock ticks
        // (10 ms), moves: a fixed loop stays under one tick in a release build.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let (op, emu) = loop {
            let mut x = 0u64;
            for i in 0..3_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
            let split = cpu_split(&before, &thread_cpu());
            if split.0 > Duration::ZERO || std::time::Instant::now() > deadline {
                break split;
            }
        };
        assert_eq!(emu, Duration::ZERO);
        assert!(op > Duration::ZERO);
        let s = RssSampler::start(Duration::from_millis(1));
        assert!(s.peak() >= rss / 2);
        // The same figures through the per-pid readers used for a child emulator.
        let pid = std::process::id();
        assert!(process_hwm_bytes(pid).unwrap() >= rss / 2);
        let cpu = process_cpu_seconds(pid).unwrap();
        let burn = std::time::Instant::now();
        while process_cpu_seconds(pid).unwrap() < cpu + 0.05 {
            assert!(
                burn.elapsed() < Duration::from_secs(10),
                "CPU time never grew"
            );
            std::hint::black_box((0..100_000u64).sum::<u64>());
        }
    }
}
