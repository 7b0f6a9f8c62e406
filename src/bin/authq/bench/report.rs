//! The bench's output: a table per scenario on stdout, the same figures as JSON with `--json`.

use super::driver::Outcome;
use super::spawn::WorkerReport;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// One line of a scenario's table: a load, or a ceiling.
#[derive(Clone, Debug)]
pub struct Stream {
    /// What ran (`check`, `echo ceiling`, `login (flood)`…).
    pub name: String,
    /// Calls made (argon2 runs for the argon2 ceiling).
    pub requests: u64,
    /// Calls answered (ok or error).
    pub replies: u64,
    /// Calls without an ok reply, by code.
    pub errors: BTreeMap<String, u64>,
    /// Calls (or runs) per second.
    pub throughput: f64,
    /// Latency p50, p90, p99, max; `None` for the argon2 ceiling.
    pub latency: Option<[Duration; 4]>,
    /// Throughput as a fraction of a ceiling, and which.
    pub ratio: Option<(f64, &'static str)>,
}

impl Stream {
    /// A line for a load the driver ran.
    pub fn load(name: &str, o: &Outcome) -> Self {
        Self {
            name: name.to_owned(),
            requests: o.requests,
            replies: o.replies,
            errors: o.errors.clone(),
            throughput: o.throughput(),
            latency: Some([
                o.percentile(0.50),
                o.percentile(0.90),
                o.percentile(0.99),
                o.percentile(1.0),
            ]),
            ratio: None,
        }
    }

    /// Sets the ratio to a ceiling's throughput.
    pub fn against(mut self, ceiling: f64, which: &'static str) -> Self {
        if ceiling > 0.0 {
            self.ratio = Some((self.throughput / ceiling, which));
        }
        self
    }

    fn to_json(&self) -> Value {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        json!({
            "name": self.name,
            "requests": self.requests,
            "replies": self.replies,
            "unanswered": self.requests - self.replies,
            "errors": self.errors,
            "throughput_per_s": self.throughput,
            "latency_ms": self.latency.map(|l| json!({
                "p50": ms(l[0]), "p90": ms(l[1]), "p99": ms(l[2]), "max": ms(l[3]),
            })),
            "ratio": self.ratio.map(|(r, _)| r),
            "ceiling": self.ratio.map(|(_, c)| c),
        })
    }
}

/// Everything one scenario measured.
#[derive(Debug, Default)]
pub struct ScenarioReport {
    /// `ping`, `check`, …
    pub name: String,
    /// Its loads and ceilings.
    pub streams: Vec<Stream>,
    /// Derived figures (`check_p99_flood_over_alone`, …), printed and in the JSON.
    pub figures: Vec<(String, f64, String)>,
    /// The spawned worker's figures.
    pub worker: Option<WorkerReport>,
}

impl ScenarioReport {
    /// Adds a derived figure with a note (e.g. the target).
    pub fn figure(&mut self, key: &str, value: f64, note: impl Into<String>) {
        self.figures.push((key.to_owned(), value, note.into()));
    }

    /// The table, as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "== {} ==", self.name);
        let _ = writeln!(
            out,
            "{:<18} {:>9} {:>9} {:<22} {:>10} {:>9} {:>9} {:>9} {:>9}  vs ceiling",
            "stream", "requests", "replies", "errors", "per s", "p50", "p90", "p99", "max"
        );
        for s in &self.streams {
            let errors = if s.errors.is_empty() {
                "-".to_owned()
            } else {
                s.errors
                    .iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let lat = |i: usize| s.latency.map_or("-".to_owned(), |l| fmt_duration(l[i]));
            let ratio = s
                .ratio
                .map_or(String::new(), |(r, c)| format!("{:.1} % of {c}", r * 100.0));
            let _ = writeln!(
                out,
                "{:<18} {:>9} {:>9} {:<22} {:>10.1} {:>9} {:>9} {:>9} {:>9}  {}",
                s.name,
                s.requests,
                s.replies,
                errors,
                s.throughput,
                lat(0),
                lat(1),
                lat(2),
                lat(3),
                ratio
            );
        }
        for (key, value, note) in &self.figures {
            let _ = writeln!(out, "{key} = {value:.3} {note}");
        }
        if let Some(w) = &self.worker {
            let _ = writeln!(
                out,
                "worker: CPU {:.2} s (user + system), peak RSS {:.1} MiB, RSS at the end {:.1} MiB",
                w.stats.cpu.as_secs_f64(),
                w.stats.peak_rss_kib as f64 / 1024.0,
                w.stats.rss_kib as f64 / 1024.0
            );
            if let Some(stages) = w.metrics.as_ref().and_then(|m| m.get("stages")) {
                let _ = writeln!(out, "where the time goes (worker, mean per use):");
                for stage in [
                    "decode", "store", "hash", "encode", "publish", "ack", "total",
                ] {
                    let nanos = stages[stage]["nanos"].as_u64().unwrap_or(0);
                    let count = stages[stage]["count"].as_u64().unwrap_or(0);
                    if let Some(mean) = nanos.checked_div(count) {
                        let _ = writeln!(
                            out,
                            "  {stage:<8} {:>10} × {count:<8} = {:>8.3} s",
                            fmt_duration(Duration::from_nanos(mean)),
                            nanos as f64 / 1e9
                        );
                    }
                }
            }
        }
        out
    }

    /// The same figures as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.name,
            "streams": self.streams.iter().map(Stream::to_json).collect::<Vec<_>>(),
            "figures": self.figures.iter().map(|(k, v, n)| (k.clone(), json!({"value": v, "note": n}))).collect::<serde_json::Map<_, _>>(),
            "worker": self.worker.as_ref().map(|w| json!({
                "cpu_s": w.stats.cpu.as_secs_f64(),
                "peak_rss_kib": w.stats.peak_rss_kib,
                "rss_kib": w.stats.rss_kib,
                "metrics": w.metrics,
            })),
        })
    }
}

fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

/// The machine the figures come from: cores, load average, kernel.
pub fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    json!({
        "cores": cores,
        "cpu": cpu,
        "kernel": kernel.trim(),
        "loadavg": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}
