//! Checker self-tests: a checker that cannot fail proves nothing. Each test plants one
//! bug and requires the named checker to report it on some seed below 100, stopping at
//! the first seed that does. CI runs the same self-tests, faster, through the release
//! runner (`scripts/simulate.sh --plant ... --expect ...`).
#![cfg(madsim)]

use tidemark_simulation::scenario::{run_seed, Planted, ScenarioConfig};

/// The first seed below 100 on which `checker` reports `planted`, if any.
fn first_catch(planted: Planted, checker: &str) -> Option<u64> {
    let cfg = ScenarioConfig { planted: Some(planted), ..ScenarioConfig::default() };
    (0..100).find(|&seed| run_seed(seed, &cfg).violations.iter().any(|v| v.checker == checker))
}

#[test]
fn a_no_op_fsync_loses_acknowledged_writes() {
    let seed = first_catch(Planted::FsyncNoop, "acked-durable");
    assert!(seed.is_some(), "100 seeds with fsync as a no-op and no acknowledged write was lost");
}

#[test]
fn skipping_commands_after_a_blank_entry_makes_replicas_diverge() {
    let seed = first_catch(Planted::SkipAfterBlank, "dense-identical-replicas");
    assert!(seed.is_some(), "100 seeds with the skip-after-blank bug and replicas never diverged");
}

#[test]
fn a_clean_seed_passes_every_checker() {
    let result = run_seed(0, &ScenarioConfig::default());
    assert!(result.violations.is_empty(), "seed 0 failed: {:?}", result.violations);
    assert!(result.stats.acked > 0, "seed 0 acknowledged nothing");
}
