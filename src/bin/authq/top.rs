//! `authq top`: a live view of a running deployment, from the `/metrics` endpoints of one or
//! more workers (`authq serve --metrics-addr`).
//!
//! Every interval it scrapes each endpoint and shows what changed since the previous scrape:
//! per tube its depth and consumers (as the broker reports them) and the rate of requests
//! answered from it (each operation counted on its default tube), per operation its rate,
//! error rate and the p50/p99 of its duration (interpolated in the histogram's buckets, as
//! Prometheus' `histogram_quantile` does). On a terminal the screen is redrawn; in a pipe each
//! interval prints one line of `key=value` fields.

use crate::cli::TopArgs;
use anyhow::{Context as _, bail};
use authq_protocol::{Operation, Tube};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::Instant;

/// What one scrape of every endpoint adds up to.
#[derive(Clone, Debug, Default)]
struct Totals {
    /// Requests by operation: (all, errors).
    requests: BTreeMap<String, (f64, f64)>,
    /// Duration buckets by operation: (upper bound, cumulative count), summed over endpoints.
    buckets: BTreeMap<String, Vec<(f64, f64)>>,
    /// Per tube: (messages, consumers), as the broker reports them (the largest any endpoint saw).
    tubes: BTreeMap<String, (f64, f64)>,
    /// Endpoints that answered.
    answered: usize,
}

/// Runs `authq top` until `--count` intervals have been shown (or forever).
pub async fn run(args: TopArgs) -> anyhow::Result<()> {
    if args.metrics.is_empty() {
        bail!("name at least one metrics endpoint (--metrics HOST:PORT)");
    }
    let urls: Vec<String> = args.metrics.iter().map(|m| metrics_url(m)).collect();
    // reqwest is built without a TLS provider of its own; ring is the process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A worker slow to answer delays the view rather than vanishing from it.
    let http = reqwest::Client::builder()
        .timeout(args.interval.max(std::time::Duration::from_secs(5)))
        .build()
        .context("an HTTP client")?;
    let terminal = std::io::stdout().is_terminal();
    let mut previous = (scrape_all(&http, &urls).await, Instant::now());
    let mut shown = 0u64;
    loop {
        tokio::time::sleep(args.interval).await;
        let now = (scrape_all(&http, &urls).await, Instant::now());
        let seconds = now.1.duration_since(previous.1).as_secs_f64().max(1e-3);
        let view = render(&previous.0, &now.0, seconds, urls.len(), terminal);
        let mut out = std::io::stdout().lock();
        if terminal {
            // Home, clear, then the view.
            write!(out, "\x1b[H\x1b[2J{view}")?;
        } else {
            write!(out, "{view}")?;
        }
        out.flush()?;
        previous = now;
        shown += 1;
        if args.count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
    }
}

/// `HOST:PORT` or a URL, as the URL of its `/metrics`.
fn metrics_url(endpoint: &str) -> String {
    let base = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    };
    if base.ends_with("/metrics") {
        base
    } else {
        format!("{}/metrics", base.trim_end_matches('/'))
    }
}

async fn scrape_all(http: &reqwest::Client, urls: &[String]) -> Totals {
    let mut totals = Totals::default();
    for url in urls {
        let Ok(response) = http.get(url).send().await else {
            continue;
        };
        let Ok(text) = response.text().await else {
            continue;
        };
        let Ok(scrape) = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        else {
            continue;
        };
        totals.answered += 1;
        add(&mut totals, scrape);
    }
    totals
}

fn add(totals: &mut Totals, scrape: prometheus_parse::Scrape) {
    use prometheus_parse::Value;
    for sample in scrape.samples {
        let label = |name: &str| sample.labels.get(name).unwrap_or("").to_owned();
        match (sample.metric.as_str(), &sample.value) {
            ("authq_requests_total", Value::Counter(v) | Value::Untyped(v)) => {
                let entry = totals.requests.entry(label("operation")).or_default();
                entry.0 += v;
                if !matches!(sample.labels.get("outcome"), Some("ok" | "replayed")) {
                    entry.1 += v;
                }
            }
            ("authq_request_duration_seconds", Value::Histogram(buckets)) => {
                let sum = totals.buckets.entry(label("operation")).or_default();
                if sum.is_empty() {
                    sum.extend(buckets.iter().map(|b| (b.less_than, 0.0)));
                }
                for (acc, b) in sum.iter_mut().zip(buckets) {
                    acc.1 += b.count;
                }
            }
            ("authq_tube_messages", Value::Gauge(v) | Value::Untyped(v)) => {
                let t = totals.tubes.entry(label("tube")).or_default();
                t.0 = t.0.max(*v);
            }
            ("authq_tube_consumers", Value::Gauge(v) | Value::Untyped(v)) => {
                let t = totals.tubes.entry(label("tube")).or_default();
                t.1 = t.1.max(*v);
            }
            _ => {}
        }
    }
}

/// The `q` quantile (0–1) of the observations between two cumulative bucket lists, by linear
/// interpolation inside the bucket it falls in; `None` without observations.
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let counts: Vec<(f64, f64)> = after
        .iter()
        .enumerate()
        .map(|(i, (le, n))| (*le, n - before.get(i).map_or(0.0, |b| b.1)))
        .collect();
    let total = counts.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (le, n) in &counts {
        if *n >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let share = if n - lower.1 > 0.0 {
                (rank - lower.1) / (n - lower.1)
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * share);
        }
        lower = (*le, *n);
    }
    Some(lower.0)
}

/// One operation's figures over an interval.
struct OpFigures {
    name: String,
    rate: f64,
    errors: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

fn render(
    before: &Totals,
    after: &Totals,
    seconds: f64,
    endpoints: usize,
    terminal: bool,
) -> String {
    let mut ops = Vec::new();
    for (name, (all, errors)) in &after.requests {
        let (all0, errors0) = before.requests.get(name).copied().unwrap_or_default();
        let empty = Vec::new();
        let (b0, b1) = (
            before.buckets.get(name).unwrap_or(&empty),
            after.buckets.get(name).unwrap_or(&empty),
        );
        ops.push(OpFigures {
            name: name.clone(),
            rate: (all - all0).max(0.0) / seconds,
            errors: (errors - errors0).max(0.0) / seconds,
            p50_ms: quantile(b0, b1, 0.5).map(|s| s * 1000.0),
            p99_ms: quantile(b0, b1, 0.99).map(|s| s * 1000.0),
        });
    }
    let tube_rate = |tube: &str| -> f64 {
        ops.iter()
            .filter(|o| {
                Operation::parse(&o.name).is_some_and(|op| op.default_tube().as_str() == tube)
            })
            .map(|o| o.rate)
            .sum()
    };
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    let mut out = String::new();
    if terminal {
        let _ = writeln!(
            out,
            "authq top: {} of {endpoints} endpoints answered, over {seconds:.1} s\n",
            after.answered
        );
        let _ = writeln!(
            out,
            "{:<10} {:>8} {:>10} {:>10}",
            "TUBE", "DEPTH", "CONSUMERS", "RATE/s"
        );
        for tube in Tube::ALL {
            let (depth, consumers) = after.tubes.get(tube.as_str()).copied().unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<10} {depth:>8.0} {consumers:>10.0} {:>10.1}",
                tube.as_str(),
                tube_rate(tube.as_str())
            );
        }
        let _ = writeln!(
            out,
            "\n{:<22} {:>10} {:>10} {:>9} {:>9}",
            "OPERATION", "RATE/s", "ERRORS/s", "P50 ms", "P99 ms"
        );
        for o in ops.iter().filter(|o| o.rate > 0.0) {
            let _ = writeln!(
                out,
                "{:<22} {:>10.1} {:>10.1} {:>9} {:>9}",
                o.name,
                o.rate,
                o.errors,
                ms(o.p50_ms),
                ms(o.p99_ms)
            );
        }
    } else {
        let total: f64 = ops.iter().map(|o| o.rate).sum();
        let errors: f64 = ops.iter().map(|o| o.errors).sum();
        let _ = write!(
            out,
            "endpoints={}/{endpoints} requests/s={total:.1} errors/s={errors:.1}",
            after.answered
        );
        for tube in Tube::ALL {
            let (depth, consumers) = after.tubes.get(tube.as_str()).copied().unwrap_or_default();
            let _ = write!(
                out,
                " {t}.depth={depth:.0} {t}.consumers={consumers:.0} {t}.rate={:.1}",
                tube_rate(tube.as_str()),
                t = tube.as_str()
            );
        }
        for o in ops.iter().filter(|o| o.rate > 0.0) {
            let _ = write!(
                out,
                " {n}.rate={:.1} {n}.errors={:.1} {n}.p50_ms={} {n}.p99_ms={}",
                o.rate,
                o.errors,
                ms(o.p50_ms),
                ms(o.p99_ms),
                n = o.name
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let before = [(0.001, 0.0), (0.002, 0.0), (f64::INFINITY, 0.0)];
        let after = [(0.001, 50.0), (0.002, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(&before, &after, 0.5), Some(0.001));
        let p99 = quantile(&before, &after, 0.99).unwrap();
        assert!((p99 - 0.00198).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(&after, &after, 0.5), None, "no observation");
    }

    #[test]
    fn endpoints_may_be_addresses_or_urls() {
        assert_eq!(
            metrics_url("127.0.0.1:9187"),
            "http://127.0.0.1:9187/metrics"
        );
        assert_eq!(metrics_url("http://w1:9187/"), "http://w1:9187/metrics");
        assert_eq!(
            metrics_url("http://w1:9187/metrics"),
            "http://w1:9187/metrics"
        );
    }
}
