//! What every bench measures and how it reports it: an HDR latency histogram, record and
//! byte counters, the longest stretch with nothing arriving, errors, the live progress
//! line and the summary (text or the JSON contract).
//!
//! The benches differ only in what one "sample" is (an acknowledgement, a poll call, a
//! received record), so they share this one recorder and one summary shape, and scripts
//! can compare any two runs field by field.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

/// The JSON summary (field names are a contract for scripts comparing runs: add, never rename).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub records: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub max_ack_gap_ms: f64,
    pub errors: u64,
    /// Why a bench that can finish early stopped (`"all_read"`, `"duration"`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<&'static str>,
}

/// Shared by a bench's tasks: latency histogram (µs), counters, gap tracking, errors.
pub struct Stats {
    pub start: Instant,
    hist: Mutex<Histogram<u64>>,
    /// The last second's samples, for the live p99 (reset by the progress line).
    interval: Mutex<Histogram<u64>>,
    pub records: AtomicU64,
    bytes: AtomicU64,
    pub errors: AtomicU64,
    last_us: AtomicU64,
    max_gap_us: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Stats {
    pub fn new() -> Stats {
        let hist = || Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"));
        Stats {
            start: Instant::now(),
            hist: hist(),
            interval: hist(),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
            max_gap_us: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    /// One latency sample that delivered `records` records of `bytes` bytes in total.
    /// The gap clock restarts here: the longest time between two such calls (or from the
    /// start to the first) is the stall a user would have seen.
    pub fn record(&self, latency_us: u64, records: u64, bytes: u64) {
        let us = latency_us.max(1);
        let _ = self.hist.lock().expect("histogram lock").record(us);
        let _ = self.interval.lock().expect("histogram lock").record(us);
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let at = Instant::now().duration_since(self.start).as_micros() as u64;
        let prev = self.last_us.fetch_max(at, Ordering::Relaxed);
        self.max_gap_us.fetch_max(at.saturating_sub(prev), Ordering::Relaxed);
    }

    /// Counts `n` failures and keeps the first message, which usually explains the rest.
    pub fn error(&self, n: u64, message: String) {
        self.errors.fetch_add(n, Ordering::Relaxed);
        self.first_error.lock().expect("error lock").get_or_insert(message);
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().expect("error lock").clone()
    }

    /// The p99 of the samples since the last call, in µs (0 when there were none).
    fn take_interval_p99(&self) -> u64 {
        let mut h = self.interval.lock().expect("histogram lock");
        let p = if h.is_empty() { 0 } else { h.value_at_quantile(0.99) };
        h.reset();
        p
    }

    /// The summary as of now. `seconds` runs to the last sample, so a tail spent only
    /// waiting for stragglers does not dilute the throughput.
    pub fn summarize(&self, stopped: Option<&'static str>) -> Summary {
        let seconds = self.last_us.load(Ordering::Relaxed).max(1) as f64 / 1e6;
        let records = self.records.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let h = self.hist.lock().expect("histogram lock");
        let ms = |q: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1000.0 };
        Summary {
            records,
            seconds,
            records_per_sec: records as f64 / seconds,
            mb_per_sec: bytes as f64 / 1e6 / seconds,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 },
            max_ack_gap_ms: self.max_gap_us.load(Ordering::Relaxed) as f64 / 1000.0,
            errors: self.errors.load(Ordering::Relaxed),
            stopped,
        }
    }
}

/// One line a second on stderr until aborted (hidden when stderr is not a terminal).
/// `extra` adds bench-specific words (e.g. how many records were sent).
pub async fn show_progress(stats: Arc<Stats>, deadline: Instant, extra: impl Fn() -> String) {
    // Cleared when the task is aborted, so the summary does not follow a stale live line.
    let bar = indicatif::ProgressBar::new_spinner().with_finish(indicatif::ProgressFinish::AndClear);
    let (mut last_records, mut last_bytes) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let records = stats.records.load(Ordering::Relaxed);
        let bytes = stats.bytes.load(Ordering::Relaxed);
        let p99 = stats.take_interval_p99();
        let (n, b) = (records - last_records, bytes - last_bytes);
        (last_records, last_bytes) = (records, bytes);
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        bar.set_message(format!(
            "{n} records/s  {:.1} MB/s  p99 {:.2} ms  errors {}{}  ({left} s left)",
            b as f64 / 1e6,
            p99 as f64 / 1000.0,
            stats.errors.load(Ordering::Relaxed),
            extra(),
        ));
        bar.tick();
    }
}

/// The human summary; `latency` names what was timed (e.g. "ack latency").
pub fn print_text(s: &Summary, latency: &str, first_error: Option<&str>) {
    println!("records      {} in {:.1} s", s.records, s.seconds);
    println!("throughput   {:.0} records/s, {:.1} MB/s", s.records_per_sec, s.mb_per_sec);
    println!(
        "{latency:<12} p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms
    );
    println!("max gap      {:.1} ms", s.max_ack_gap_ms);
    if let Some(stopped) = s.stopped {
        println!("stopped      {stopped}");
    }
    match first_error {
        Some(e) if s.errors > 0 => println!("errors       {} (first: {e})", s.errors),
        _ => println!("errors       {}", s.errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_has_the_contract_fields_and_counts_bytes() {
        let stats = Stats::new();
        stats.record(2_000, 1, 1000);
        stats.record(4_000, 3, 3000);
        stats.error(1, "boom".into());
        stats.error(1, "later".into());
        let s = stats.summarize(Some("duration"));
        assert_eq!((s.records, s.errors), (4, 2));
        assert!(s.p50_ms >= 1.99 && s.p50_ms <= 2.01, "{}", s.p50_ms);
        assert!(s.max_ms >= 3.99 && s.max_ms <= 4.01, "{}", s.max_ms);
        assert!((s.mb_per_sec * s.seconds - 0.004).abs() < 1e-9, "4000 bytes in {} s", s.seconds);
        let json = serde_json::to_value(&s).unwrap();
        for field in
            ["records_per_sec", "mb_per_sec", "p50_ms", "p99_ms", "p999_ms", "max_ms", "max_ack_gap_ms", "errors"]
        {
            assert!(json.get(field).is_some(), "missing {field} in {json}");
        }
        assert_eq!(json["stopped"], "duration");
        assert_eq!(stats.first_error().as_deref(), Some("boom"), "the first error is kept");
    }

    #[test]
    fn an_empty_run_reports_zeroes_not_garbage() {
        let s = Stats::new().summarize(None);
        assert_eq!((s.records, s.p99_ms, s.max_ms, s.errors), (0, 0.0, 0.0, 0));
        let json = serde_json::to_value(&s).unwrap();
        assert!(json.get("stopped").is_none(), "absent reason is left out: {json}");
    }

    #[test]
    fn the_gap_is_the_longest_stretch_without_a_sample() {
        let stats = Stats::new();
        let sleep = |ms| std::thread::sleep(Duration::from_millis(ms));
        sleep(5);
        stats.record(1, 1, 1);
        sleep(60);
        stats.record(1, 1, 1);
        stats.record(1, 1, 1);
        let s = stats.summarize(None);
        assert!(s.max_ack_gap_ms >= 60.0, "gap {}", s.max_ack_gap_ms);
        assert!(s.max_ack_gap_ms <= s.seconds * 1000.0, "gap {} within {} s", s.max_ack_gap_ms, s.seconds);
    }
}
