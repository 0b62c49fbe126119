//! Latency histograms, counters, their merge, and the final report (human and JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Transport error kinds, as reported in `errors_by_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// TCP connect failed or timed out.
    Connect,
    /// No complete response within `--timeout`.
    Timeout,
    /// Connection reset or closed by the server before the response was complete.
    Closed,
    /// Anything else (bad HTTP, other I/O errors).
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 4] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Closed,
        ErrorKind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "closed",
            ErrorKind::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Classifies an I/O error that happened on an established connection.
    pub fn of_io(e: &std::io::Error) -> ErrorKind {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::NotConnected => ErrorKind::Closed,
            K::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Other,
        }
    }
}

/// A latency histogram in microseconds (3 significant digits, grows as needed).
pub fn new_histogram() -> Histogram<u64> {
    // sigfig 3 is always accepted by hdrhistogram.
    Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures is valid"))
}

/// Microseconds in `d`, at least 1 so that every sample is visible.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Counters and latencies of one event-loop thread (or one whole run after merging).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of measured responses, µs.
    pub hist: Histogram<u64>,
    /// Response counts by status code (index = code, 0..=999).
    pub status: Box<[u64]>,
    pub errors: [u64; 4],
    /// First error message seen per kind.
    pub error_samples: [Option<String>; 4],
    /// First body seen per non-2xx/3xx status.
    pub status_samples: BTreeMap<u16, String>,
    pub bytes: u64,
    /// Responses and errors during the warmup (not in the numbers above).
    pub warmup_requests: u64,
    /// Scheduled requests never sent (fixed rate, run ended first).
    pub unsent: u64,
    /// Measured requests whose send was behind schedule by more than 1 ms (fixed rate).
    pub late_sends: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            hist: new_histogram(),
            status: vec![0; 1000].into_boxed_slice(),
            errors: [0; 4],
            error_samples: Default::default(),
            status_samples: BTreeMap::new(),
            bytes: 0,
            warmup_requests: 0,
            unsent: 0,
            late_sends: 0,
        }
    }

    /// Records one response.
    #[inline]
    pub fn record_response(&mut self, status: u16, latency_us: u64, bytes: u64) {
        if let Some(c) = self.status.get_mut(usize::from(status)) {
            *c += 1;
        }
        // Auto-resizing: a value above the current range grows it (never clamps).
        let _ = self.hist.record(latency_us);
        self.bytes += bytes;
    }

    /// Whether a body sample is still wanted for this status.
    #[inline]
    pub fn wants_sample(&self, status_hint: Option<u16>) -> bool {
        match status_hint {
            Some(s) => !(200..400).contains(&s) && !self.status_samples.contains_key(&s),
            None => self.status_samples.len() < 8,
        }
    }

    pub fn record_error(&mut self, kind: ErrorKind, msg: impl FnOnce() -> String) {
        self.errors[kind.index()] += 1;
        let slot = &mut self.error_samples[kind.index()];
        if slot.is_none() {
            *slot = Some(msg());
        }
    }

    pub fn responses(&self) -> u64 {
        self.status.iter().sum()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        // Both histograms auto-resize, so adding cannot fail on range.
        let _ = self.hist.add(&other.hist);
        for (a, b) in self.status.iter_mut().zip(other.status.iter()) {
            *a += b;
        }
        for k in ErrorKind::ALL {
            let i = k.index();
            self.errors[i] += other.errors[i];
            if self.error_samples[i].is_none() {
                self.error_samples[i].clone_from(&other.error_samples[i]);
            }
        }
        for (s, body) in &other.status_samples {
            self.status_samples
                .entry(*s)
                .or_insert_with(|| body.clone());
        }
        self.bytes += other.bytes;
        self.warmup_requests += other.warmup_requests;
        self.unsent += other.unsent;
        self.late_sends += other.late_sends;
    }
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub min: f64,
    pub mean: f64,
    pub stdev: f64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl LatencyMs {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencyMs::default();
        }
        let round3 = |v: f64| (v * 1000.0).round() / 1000.0;
        LatencyMs {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            min: ms(h.min()),
            mean: round3(h.mean() / 1000.0),
            stdev: round3(h.stdev() / 1000.0),
        }
    }
}

/// Per-step figures of a scenario.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StepReport {
    pub count: u64,
    pub failures: u64,
    #[serde(flatten)]
    pub latency_ms: LatencyMs,
}

/// Scenario results (`"scenario"` in JSON).
#[derive(Debug, Clone, Serialize, Default)]
pub struct ScenarioReport {
    pub name: String,
    pub flows_started: u64,
    pub flows_completed: u64,
    pub flows_per_sec: f64,
    /// Orders paid by the simulator that did not reach `paid` in time.
    pub not_paid: u64,
    /// Flows that stopped at a failing step, by step.
    pub failed: BTreeMap<String, u64>,
    pub steps: BTreeMap<String, StepReport>,
    /// Step names in flow order (for the human summary).
    #[serde(skip)]
    pub step_order: Vec<String>,
}

/// The result of a run; `--json` prints it as one object.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Responses received (any status) in the measured period.
    pub requests: u64,
    pub duration_secs: f64,
    /// `requests / duration_secs`.
    pub rps: f64,
    pub latency_ms: LatencyMs,
    pub status: BTreeMap<u16, u64>,
    /// Transport errors (not in `requests`).
    pub errors: u64,
    pub errors_by_kind: BTreeMap<&'static str, u64>,
    pub mode: &'static str,
    pub method: String,
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    /// `--rate`, when given.
    pub target_rate: Option<f64>,
    /// Fixed rate: scheduled requests never sent because the run ended first.
    pub unsent: u64,
    /// Fixed rate: requests sent more than 1 ms behind schedule (all connections were busy).
    pub late_sends: u64,
    pub warmup_secs: f64,
    pub warmup_requests: u64,
    pub bytes_received: u64,
    /// First message per error kind.
    pub error_samples: BTreeMap<&'static str, String>,
    /// First body per unexpected (not 2xx/3xx) status.
    pub status_samples: BTreeMap<u16, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<ScenarioReport>,
    /// The merged latency histogram (µs); not serialised.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

/// Description of the run, for the report header.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub mode: &'static str,
    pub method: String,
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    pub target_rate: Option<f64>,
    pub warmup: Duration,
}

impl Report {
    pub fn new(stats: &Stats, measured: Duration, info: RunInfo) -> Self {
        let requests = stats.responses();
        let secs = measured.as_secs_f64();
        let status = stats
            .status
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .filter_map(|(code, n)| u16::try_from(code).ok().map(|c| (c, *n)))
            .collect();
        let errors_by_kind = ErrorKind::ALL
            .iter()
            .map(|k| (k.name(), stats.errors[k.index()]))
            .collect();
        let error_samples = ErrorKind::ALL
            .iter()
            .filter_map(|k| {
                stats.error_samples[k.index()]
                    .clone()
                    .map(|m| (k.name(), m))
            })
            .collect();
        Report {
            requests,
            duration_secs: (secs * 1e6).round() / 1e6,
            rps: if secs > 0.0 {
                ((requests as f64 / secs) * 10.0).round() / 10.0
            } else {
                0.0
            },
            latency_ms: LatencyMs::of(&stats.hist),
            status,
            errors: stats.error_count(),
            errors_by_kind,
            mode: info.mode,
            method: info.method,
            url: info.url,
            connections: info.connections,
            threads: info.threads,
            target_rate: info.target_rate,
            unsent: stats.unsent,
            late_sends: stats.late_sends,
            warmup_secs: info.warmup.as_secs_f64(),
            warmup_requests: stats.warmup_requests,
            bytes_received: stats.bytes,
            error_samples,
            status_samples: stats.status_samples.clone(),
            scenario: None,
            histogram: stats.hist.clone(),
        }
    }

    /// The one-line JSON object printed by `--json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human summary.
    pub fn human(&self) -> String {
        let mut o = String::new();
        let rate = match self.target_rate {
            Some(r) => format!("fixed rate {r} req/s"),
            None if self.mode == "scenario" => "scenario".to_string(),
            None => "closed loop".to_string(),
        };
        let _ = writeln!(
            o,
            "{} {}  ({} connections, {} threads, {rate})",
            self.method, self.url, self.connections, self.threads
        );
        if self.warmup_secs > 0.0 {
            let _ = writeln!(
                o,
                "  warmup       {:.2}s, {} requests not counted",
                self.warmup_secs, self.warmup_requests
            );
        }
        let _ = writeln!(
            o,
            "  requests     {} in {:.2}s, {:.1} req/s, {:.2} MB read",
            self.requests,
            self.duration_secs,
            self.rps,
            self.bytes_received as f64 / 1e6
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            o,
            "  latency ms   p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (mean {:.3}, stdev {:.3})",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean, l.stdev
        );
        let codes: Vec<String> = self
            .status
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        let _ = writeln!(
            o,
            "  status       {}",
            if codes.is_empty() {
                "-".into()
            } else {
                codes.join(", ")
            }
        );
        let kinds: Vec<String> = self
            .errors_by_kind
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if kinds.is_empty() {
            let _ = writeln!(o, "  errors       0");
        } else {
            let _ = writeln!(o, "  errors       {} ({})", self.errors, kinds.join(", "));
            for (k, m) in &self.error_samples {
                let _ = writeln!(o, "    first {k} error: {}", one_line(m, 200));
            }
        }
        if let Some(s) = &self.scenario {
            let _ = writeln!(
                o,
                "  flows        {} started, {} completed ({:.1}/s), {} not paid",
                s.flows_started, s.flows_completed, s.flows_per_sec, s.not_paid
            );
            if !s.failed.is_empty() {
                let f: Vec<String> = s.failed.iter().map(|(k, n)| format!("{k} {n}")).collect();
                let _ = writeln!(o, "  failed at    {}", f.join(", "));
            }
            let _ = writeln!(
                o,
                "  step               count   fail    p50 ms    p99 ms    max ms"
            );
            for name in &s.step_order {
                if let Some(st) = s.steps.get(name) {
                    let _ = writeln!(
                        o,
                        "  {name:<16} {:>7} {:>6} {:>9.3} {:>9.3} {:>9.3}",
                        st.count,
                        st.failures,
                        st.latency_ms.p50,
                        st.latency_ms.p99,
                        st.latency_ms.max
                    );
                }
            }
        }
        let unexpected: u64 = self
            .status
            .iter()
            .filter(|(c, _)| !(200..400).contains(*c))
            .map(|(_, n)| n)
            .sum();
        if unexpected > 0 {
            let _ = writeln!(o, "  note: {unexpected} responses were not 2xx/3xx");
            for (c, body) in &self.status_samples {
                let _ = writeln!(o, "    first {c} body: {}", one_line(body, 160));
            }
        }
        if self.unsent > 0 {
            let _ = writeln!(
                o,
                "  note: {} scheduled requests were never sent: the server (or -c) could not sustain --rate",
                self.unsent
            );
        }
        if self.late_sends > 0 && self.target_rate.is_some() {
            let _ = writeln!(
                o,
                "  note: {} requests left behind schedule (all connections busy); their wait is in the latency",
                self.late_sends
            );
        }
        if self.errors_by_kind.get("timeout").copied().unwrap_or(0) > 0 {
            let _ = writeln!(
                o,
                "  note: timed-out requests are errors and are not in the latency percentiles"
            );
        }
        o
    }
}

/// `s` on one line (whitespace runs collapsed, controls dropped), at most `max` chars.
fn one_line(s: &str, max: usize) -> String {
    let mut out = String::new();
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !c.is_control()));
    }
    if out.chars().count() > max {
        out = out.chars().take(max).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        for v in 1..=900u64 {
            a.record_response(200, v, 10);
        }
        for v in 901..=1000u64 {
            b.record_response(if v % 2 == 0 { 200 } else { 503 }, v * 1000, 10);
        }
        b.record_error(ErrorKind::Timeout, || "t1".into());
        b.record_error(ErrorKind::Timeout, || "t2".into());
        a.record_error(ErrorKind::Connect, || "c".into());
        b.status_samples.insert(503, "busy".into());
        b.warmup_requests = 7;
        b.unsent = 3;
        a.merge(&b);

        assert_eq!(a.responses(), 1000);
        assert_eq!(a.status[200], 950);
        assert_eq!(a.status[503], 50);
        assert_eq!(a.hist.len(), 1000);
        assert_eq!(a.errors, [1, 2, 0, 0]);
        assert_eq!(a.error_samples[1].as_deref(), Some("t1"));
        assert_eq!(a.bytes, 10_000);
        assert_eq!(a.warmup_requests, 7);
        assert_eq!(a.unsent, 3);

        let r = Report::new(
            &a,
            Duration::from_secs(2),
            RunInfo {
                mode: "closed-loop",
                method: "GET".into(),
                url: "http://127.0.0.1/".into(),
                connections: 2,
                threads: 2,
                target_rate: None,
                warmup: Duration::ZERO,
            },
        );
        assert_eq!(r.requests, 1000);
        assert_eq!(r.rps, 500.0);
        assert_eq!(r.errors, 3);
        assert_eq!(r.status.values().sum::<u64>(), r.requests);
        // p50 is the 500th value (500 µs), p99 is in b's range (990 ms), max 1000 ms.
        assert!((r.latency_ms.p50 - 0.5).abs() < 0.001, "{:?}", r.latency_ms);
        assert!((r.latency_ms.p99 - 990.0).abs() < 1.0, "{:?}", r.latency_ms);
        assert!(
            (r.latency_ms.max - 1000.0).abs() < 1.0,
            "{:?}",
            r.latency_ms
        );

        let v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
        assert_eq!(v["requests"], 1000);
        assert_eq!(v["status"]["200"], 950);
        assert_eq!(v["status"]["503"], 50);
        assert_eq!(v["errors_by_kind"]["timeout"], 2);
        assert_eq!(v["errors_by_kind"]["closed"], 0);
        assert!(v["latency_ms"]["p999"].is_f64());
        assert!(r.human().contains("503: 50"));
    }

    #[test]
    fn merge_of_empty_is_empty() {
        let mut a = Stats::new();
        a.merge(&Stats::new());
        assert_eq!(a.responses(), 0);
        assert_eq!(LatencyMs::of(&a.hist), LatencyMs::default());
    }

    #[test]
    fn samples_print_on_one_line() {
        assert_eq!(
            one_line("<html>\n  <p>x</p>\r\n</html>", 100),
            "<html> <p>x</p> </html>"
        );
        assert_eq!(one_line("abcdef", 3), "abc…");
    }

    #[test]
    fn micros_never_zero() {
        assert_eq!(micros(Duration::from_nanos(10)), 1);
        assert_eq!(micros(Duration::from_millis(3)), 3000);
    }
}
