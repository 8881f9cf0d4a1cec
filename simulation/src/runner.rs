//! The seed runner: many seeds across all cores, one madsim runtime per seed, one seed
//! at a time per OS thread (madsim forbids threads *inside* a simulation, not beside it).
//!
//! ```text
//!   seeds ─> shared queue ─> worker thread 1..jobs ─> run_seed ─> results channel ─> main
//!                                                     (twice with --check-determinism)
//! ```
//!
//! Prints one line per failing seed with the command that replays it alone, then a
//! summary (seeds per minute, faults exercised). Exit status 1 if any seed failed, or
//! with `--expect`, if the planted bug was never caught.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::nemesis::NemesisConfig;
use crate::regressions::REGRESSION_SEEDS;
use crate::scenario::{run_seed, Planted, RunResult, ScenarioConfig};

#[derive(Parser, Debug)]
#[command(
    name = "tidemark-simulation",
    about = "Runs seeded chaos simulations of a Tidemark cluster (build with --cfg madsim; see scripts/simulate.sh)",
    after_help = "Examples:\n  scripts/simulate.sh --seeds 0..500\n  scripts/simulate.sh --seed 1234 --verbose\n  scripts/simulate.sh --soak 600\n  scripts/simulate.sh --plant fsync-noop --seeds 0..100 --expect acked-durable"
)]
pub struct Args {
    /// Seeds to run, START..END (END excluded).
    #[arg(long, value_parser = parse_range)]
    pub seeds: Option<Range<u64>>,
    /// One seed (add --verbose for the trace and logs).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also run the regression seeds (seeds that once found a product bug).
    #[arg(long)]
    pub regressions: bool,
    /// Run new seeds for this many seconds of wall time.
    #[arg(long, value_name = "SECS")]
    pub soak: Option<u64>,
    /// Worker threads (default: every core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Print the trace and node logs (RUST_LOG sets the filter; default info).
    #[arg(long)]
    pub verbose: bool,
    /// Plant a bug: fsync-noop or skip-after-blank.
    #[arg(long)]
    pub plant: Option<String>,
    /// Self-test: stop at the first seed failing in this checker; fail if none does.
    #[arg(long, value_name = "CHECKER")]
    pub expect: Option<String>,
    /// Run every seed twice and fail if the trace fingerprints differ.
    #[arg(long)]
    pub check_determinism: bool,
    /// Virtual seconds of faults per run.
    #[arg(long, default_value_t = 20)]
    pub chaos_secs: u64,
    /// Cluster size (default: the seed picks 3 or 5).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Run without faults (to tell a fault-triggered failure from a plain one).
    #[arg(long)]
    pub no_faults: bool,
}

/// The flags that change what a run does, so the replay command reproduces it exactly.
fn replay_flags(args: &Args) -> String {
    let mut flags = String::new();
    if let Some(p) = &args.plant {
        flags += &format!(" --plant {p}");
    }
    if args.chaos_secs != 20 {
        flags += &format!(" --chaos-secs {}", args.chaos_secs);
    }
    if let Some(n) = args.nodes {
        flags += &format!(" --nodes {n}");
    }
    if args.no_faults {
        flags += " --no-faults";
    }
    flags
}

fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("{s:?} is not START..END"))?;
    let a: u64 = a.parse().map_err(|_| format!("bad start in {s:?}"))?;
    let b: u64 = b.parse().map_err(|_| format!("bad end in {s:?}"))?;
    Ok(a..b)
}

/// Where the workers take their next seed from.
enum Source {
    List(std::vec::IntoIter<u64>),
    Soak { next: u64, until: Instant },
}

impl Source {
    fn next(&mut self) -> Option<u64> {
        match self {
            Source::List(it) => it.next(),
            Source::Soak { next, until } => (Instant::now() < *until).then(|| {
                *next += 1;
                *next - 1
            }),
        }
    }
}

/// Runs the command line; returns the process exit code.
pub fn main_with(args: Args) -> i32 {
    let planted = match args.plant.as_deref().map(|p| Planted::parse(p).ok_or(p)) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(p)) => {
            eprintln!("unknown planted bug {p:?}: use fsync-noop, skip-after-blank or vote-while-repairing");
            return 2;
        }
    };
    if args.verbose {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
        tracing_subscriber::fmt().with_env_filter(filter).init();
    } else {
        // Panics inside a run are reported as violations; keep their backtraces quiet.
        std::panic::set_hook(Box::new(|_| {}));
    }
    if let Some(code) = crate::chunks::run_chunked(&args) {
        return code;
    }
    let cfg = ScenarioConfig {
        nodes: args.nodes,
        chaos: Duration::from_secs(args.chaos_secs),
        nemesis: if args.no_faults { NemesisConfig::none() } else { NemesisConfig::full() },
        planted,
        verbose: args.verbose,
    };
    let source = match seeds(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = Instant::now();
    let summary = run_all(source, jobs, &cfg, &args);
    summary.print(&args, started.elapsed());
    match &args.expect {
        Some(checker) if summary.caught.is_some() => {
            println!(
                "self-test passed: {checker} caught {} at seed {}",
                args.plant.as_deref().unwrap_or("?"),
                summary.caught.unwrap_or(0)
            );
            0
        }
        Some(checker) => {
            println!("SELF-TEST FAILED: no seed made {checker} fail with the planted bug on");
            1
        }
        None => i32::from(summary.failed > 0),
    }
}

fn seeds(args: &Args) -> Result<Source, String> {
    if let Some(secs) = args.soak {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let first = now.as_secs() * 1000; // fresh seeds each soak, printed with each failure
        println!("soak: {secs} s of new seeds from {first}");
        return Ok(Source::Soak { next: first, until: Instant::now() + Duration::from_secs(secs) });
    }
    let mut list: Vec<u64> = args.seeds.clone().into_iter().flatten().chain(args.seed).collect();
    if args.regressions {
        list.extend(
            REGRESSION_SEEDS.iter().map(|(s, _)| *s).filter(|s| !args.seeds.as_ref().is_some_and(|r| r.contains(s))),
        );
    }
    if list.is_empty() {
        return Err("nothing to run: give --seeds A..B, --seed N, --regressions or --soak SECS".into());
    }
    Ok(Source::List(list.into_iter()))
}

#[derive(Default)]
struct Summary {
    runs: u64,
    failed: u64,
    caught: Option<u64>,
    faults: BTreeMap<&'static str, u64>,
    acked: u64,
    reads: u64,
    virtual_secs: f64,
    anomalies: Vec<(u64, String)>,
}

fn run_all(source: Source, jobs: usize, cfg: &ScenarioConfig, args: &Args) -> Summary {
    let source = Mutex::new(source);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(RunResult, Option<u64>)>();
    let mut summary = Summary::default();
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            let tx = tx.clone();
            let (source, stop) = (&source, &stop);
            s.spawn(move || loop {
                let next = if stop.load(Ordering::Acquire) {
                    None
                } else {
                    source.lock().unwrap_or_else(|e| e.into_inner()).next()
                };
                let Some(seed) = next else { break };
                let result = run_seed(seed, cfg);
                let again = args.check_determinism.then(|| run_seed(seed, cfg).fingerprint);
                if tx.send((result, again)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (result, again) in rx {
            summary.record(result, again, args, &stop);
        }
    });
    summary
}

impl Summary {
    fn record(&mut self, mut r: RunResult, again: Option<u64>, args: &Args, stop: &AtomicBool) {
        self.runs += 1;
        if let Some(fp) = again.filter(|fp| *fp != r.fingerprint) {
            let v = crate::checkers::Violation::new(
                "determinism",
                format!("fingerprint {:#018x} then {fp:#018x}", r.fingerprint),
            );
            r.violations.push(v);
        }
        for (k, n) in &r.stats.faults {
            *self.faults.entry(k).or_default() += *n as u64;
        }
        self.acked += r.stats.acked as u64;
        self.reads += r.stats.reads as u64;
        self.virtual_secs += r.stats.virtual_time.as_secs_f64();
        self.anomalies.extend(r.stats.anomalies.iter().map(|a| (r.seed, a.clone())));
        if args.verbose || args.seed.is_some() {
            println!(
                "seed {} fingerprint {:#018x}: {} nodes, {} acked, {} in flight, {} reads, faults {:?}",
                r.seed, r.fingerprint, r.stats.nodes, r.stats.acked, r.stats.in_flight, r.stats.reads, r.stats.faults
            );
        }
        if r.violations.is_empty() {
            return;
        }
        self.failed += 1;
        let expected = args.expect.as_deref().is_some_and(|c| r.violations.iter().any(|v| v.checker == c));
        if expected && self.caught.is_none() {
            self.caught = Some(r.seed);
            stop.store(true, Ordering::Release);
        }
        for v in &r.violations {
            println!("FAIL seed={} {v}", r.seed);
        }
        println!("  replay: RUST_LOG=debug scripts/simulate.sh --seed {} --verbose{}", r.seed, replay_flags(args));
    }

    fn print(&self, args: &Args, wall: Duration) {
        let per_min = self.runs as f64 / wall.as_secs_f64().max(1e-9) * 60.0;
        println!(
            "summary: {} seeds, {} failed, {:.1} s wall, {per_min:.1} seeds/min, {:.0} virtual s, {} acked records, {} tailing reads{}",
            self.runs,
            self.failed,
            wall.as_secs_f64(),
            self.virtual_secs,
            self.acked,
            self.reads,
            if args.check_determinism { ", every seed run twice" } else { "" }
        );
        let faults: Vec<String> = self.faults.iter().map(|(k, n)| format!("{k}={n}")).collect();
        println!("faults exercised: {}", faults.join(" "));
        if let Some((seed, first)) = self.anomalies.first() {
            println!("anomalies (not failures): {}; first at seed {seed}: {first}", self.anomalies.len());
        }
    }
}
