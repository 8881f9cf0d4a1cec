//! Long runs go to child processes, a chunk of seeds each. A finished run does not give
//! all its memory back (about 7 MB per seed stays with the process: the simulator's
//! per-run state), so one process running a long soak would run out of memory; a child
//! per chunk returns it all when it exits. Each child prints its own failures and summary.

use std::ops::Range;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::runner::Args;

/// Seeds per child for a `--seeds` range, and for each step of a soak.
const CHUNK: u64 = 250;
const SOAK_CHUNK: u64 = 100;
/// Set in a child's environment.
const CHILD_ENV: &str = "TIDEMARK_SIM_CHILD";

/// Runs `args` as child processes if it is long enough to need it; `None` if not.
pub fn run_chunked(args: &Args) -> Option<i32> {
    // A child never splits again (it would spawn itself without end).
    if args.expect.is_some() || args.seed.is_some() || std::env::var_os(CHILD_ENV).is_some() {
        return None;
    }
    let started = Instant::now();
    let mut failed = false;
    if args.regressions {
        failed |= !child(args, &["--regressions".to_string()]);
    }
    if let Some(secs) = args.soak {
        let until = started + Duration::from_secs(secs);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut next = now.as_secs() * 1000; // fresh seeds each soak
        println!("soak: {secs} s of new seeds from {next}, {SOAK_CHUNK} per child process");
        while Instant::now() < until {
            failed |= !child(args, &seeds_flag(next..next + SOAK_CHUNK));
            next += SOAK_CHUNK;
        }
    } else {
        let range = args.seeds.clone().filter(|r| r.end.saturating_sub(r.start) > CHUNK)?;
        let mut start = range.start;
        while start < range.end {
            let end = (start + CHUNK).min(range.end);
            failed |= !child(args, &seeds_flag(start..end));
            start = end;
        }
    }
    println!("all chunks done in {:.1} s: {}", started.elapsed().as_secs_f64(), if failed { "FAILED" } else { "ok" });
    Some(i32::from(failed))
}

fn seeds_flag(r: Range<u64>) -> Vec<String> {
    vec!["--seeds".into(), format!("{}..{}", r.start, r.end)]
}

/// Runs this binary on `extra` plus every flag that shapes a run; true if it passed.
fn child(args: &Args, extra: &[String]) -> bool {
    let mut flags: Vec<String> = extra.to_vec();
    if let Some(j) = args.jobs {
        flags.extend(["--jobs".into(), j.to_string()]);
    }
    if let Some(p) = &args.plant {
        flags.extend(["--plant".into(), p.clone()]);
    }
    if let Some(n) = args.nodes {
        flags.extend(["--nodes".into(), n.to_string()]);
    }
    flags.extend(["--chaos-secs".into(), args.chaos_secs.to_string()]);
    for (on, flag) in [(args.check_determinism, "--check-determinism"), (args.no_faults, "--no-faults")] {
        if on {
            flags.push(flag.into());
        }
    }
    let exe = std::env::current_exe().expect("the runner knows its own path");
    match Command::new(exe).args(&flags).env(CHILD_ENV, "1").status() {
        Ok(status) => status.success(),
        Err(e) => {
            eprintln!("could not start a child runner: {e}");
            false
        }
    }
}
