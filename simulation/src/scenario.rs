//! One seeded run: set up a cluster, run the workloads while the nemesis injects faults
//! for a fixed span of virtual time, heal, probe liveness, read everything back, check.
//!
//! ```text
//!  seed ─> cluster (3 or 5 nodes) ─> topics ─> workloads ║ nemesis ─> stop + heal
//!       ─> liveness probe ─> final read ─> replica read ─> checkers ─> RunResult
//! ```
//!
//! Everything here runs inside one madsim runtime, so the whole run (fault schedule,
//! message order, timings) is a function of the seed. [`run_seed`] builds that runtime.

use std::collections::BTreeMap;
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use tidemark_client::Client;

use crate::checkers::{check_all, Liveness, RunRecord, Violation};
use crate::harness::SimCluster;
use crate::nemesis::{plan, Nemesis, NemesisConfig};
use crate::trace::Trace;
use crate::workload::groups::{create_group, GroupSpec, PartitionedGroup};
use crate::workload::history::Read;
use crate::workload::producers::{client_config, Producers, IDEMPOTENT_PRODUCERS};
use crate::workload::readers::{probe, read_final, Tailers};
use crate::workload::shared::SharedGroup;
use crate::workload::{Recorder, StopFlag, TopicSpec, Workload, WorkloadCtx};

/// A bug planted on purpose, to prove the checkers can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planted {
    /// Every engine's fsync returns Ok but makes nothing durable.
    FsyncNoop,
    /// Partition state machines skip a command that follows a blank entry in one apply
    /// batch (see `tidemark_raft::planted`).
    SkipAfterBlank,
    /// A replica repairing after disk damage votes as if its log were whole (see
    /// `tidemark_raft::planted`).
    VoteWhileRepairing,
}

impl Planted {
    pub fn name(self) -> &'static str {
        match self {
            Planted::FsyncNoop => "fsync-noop",
            Planted::SkipAfterBlank => "skip-after-blank",
            Planted::VoteWhileRepairing => "vote-while-repairing",
        }
    }

    pub fn parse(s: &str) -> Option<Planted> {
        [Planted::FsyncNoop, Planted::SkipAfterBlank, Planted::VoteWhileRepairing].into_iter().find(|p| p.name() == s)
    }
}

#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    /// 3 or 5; `None` lets the seed choose (one run in four gets 5).
    pub nodes: Option<usize>,
    /// Virtual time the workloads run under faults.
    pub chaos: Duration,
    pub nemesis: NemesisConfig,
    pub planted: Option<Planted>,
    /// Keep and echo the trace lines.
    pub verbose: bool,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            nodes: None,
            chaos: Duration::from_secs(20),
            nemesis: NemesisConfig::full(),
            planted: None,
            verbose: false,
        }
    }
}

/// What the checkers need plus what the runner reports.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    pub nodes: usize,
    pub acked: usize,
    pub in_flight: usize,
    pub reads: usize,
    pub faults: BTreeMap<&'static str, u32>,
    pub virtual_time: Duration,
    /// See `History::anomalies`.
    pub anomalies: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RunResult {
    pub seed: u64,
    pub fingerprint: u64,
    pub violations: Vec<Violation>,
    pub stats: RunStats,
}

/// How long after heal every partition must serve a write.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(30);

/// Runs the scenario for `seed` in a fresh madsim runtime on a fresh OS thread. A panic
/// inside the simulation (a node asserting, the time limit) is reported as a violation.
///
/// A fresh thread per run, because std's `HashMap` seeds its hasher from per-thread keys
/// drawn once per thread: inside the runtime madsim makes that draw a function of the
/// seed, but a second run on the same thread would inherit the first run's keys (and
/// iterate its maps in another order), so two runs of one seed would differ.
pub fn run_seed(seed: u64, cfg: &ScenarioConfig) -> RunResult {
    let cfg = cfg.clone();
    let thread = std::thread::Builder::new()
        .name(format!("seed-{seed}"))
        .stack_size(64 << 20)
        .spawn(move || run_seed_here(seed, cfg))
        .expect("spawn a simulation thread");
    thread.join().unwrap_or_else(|_| panicked(seed, "the simulation thread died".into()))
}

fn run_seed_here(seed: u64, cfg: ScenarioConfig) -> RunResult {
    let mut rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.set_time_limit(Duration::from_secs(900));
    let planted = cfg.planted;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(run(seed, cfg))));
    if let Some(p) = planted {
        set_planted(p, false);
    }
    outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into());
        panicked(seed, message)
    })
}

fn panicked(seed: u64, message: String) -> RunResult {
    let violations = vec![Violation::new("panic", message.lines().next().unwrap_or_default().to_string())];
    RunResult { seed, fingerprint: 0, violations, stats: RunStats::default() }
}

fn set_planted(p: Planted, on: bool) {
    match p {
        Planted::SkipAfterBlank => tidemark_raft::planted::set_skip_after_blank(on),
        Planted::VoteWhileRepairing => tidemark_raft::planted::set_vote_while_repairing(on),
        Planted::FsyncNoop => {}
    }
}

/// The scenario itself; must run inside a madsim runtime.
pub async fn run(seed: u64, cfg: ScenarioConfig) -> RunResult {
    let trace = Trace::new(cfg.verbose);
    let n = cfg.nodes.unwrap_or_else(|| if thread_rng().gen_bool(0.25) { 5 } else { 3 });
    trace.event(format!("seed {seed}: {n} nodes, planted {:?}", cfg.planted.map(Planted::name)));
    if let Some(p) = cfg.planted {
        set_planted(p, true);
    }
    // Snapshots, purges and checkpoints every second or 64 entries, so catch-up by
    // snapshot install and restarts from checkpoints happen under the faults.
    let cluster = SimCluster::start_with(n, |c| {
        c.checkpoint_entries = 64;
        c.retention_check_ms = 1000;
    });
    if cfg.planted == Some(Planted::FsyncNoop) {
        cluster.engines.iter().for_each(|e| e.set_fsync_noop(true));
    }
    let host = cluster.client_host(1);
    let topics: Vec<TopicSpec> =
        (0..2).map(|t| TopicSpec { name: format!("t{t}"), partitions: thread_rng().gen_range(1..=3) }).collect();
    let ctx = WorkloadCtx {
        bootstrap: cluster.addrs.clone(),
        topics: topics.clone(),
        recorder: Recorder::default(),
        trace: trace.clone(),
        stop: StopFlag::default(),
    };
    let mut record = RunRecord::default();
    let mut stats = RunStats { nodes: n, ..Default::default() };
    let group = group_run(&topics);
    let setup = create_topics(ctx.clone(), group.clone());
    if let Err(e) = host.spawn(setup).await.expect("setup task") {
        let violations = vec![Violation::new("setup", e)];
        return RunResult { seed, fingerprint: trace.fingerprint(), violations, stats };
    }

    let workloads: Vec<Box<dyn Workload>> = vec![
        Box::new(Producers { first_id: 1, count: 3, idempotent: IDEMPOTENT_PRODUCERS }),
        Box::new(Producers { first_id: 4, count: 1, idempotent: false }),
        Box::new(Tailers { count: 2 }),
    ];
    let mut running: Vec<_> = workloads.iter().map(|w| host.spawn(w.run(ctx.clone()))).collect();
    // One producer on the small-retention topic: only the replica checker judges it.
    let retained_ctx = WorkloadCtx { topics: vec![retained_topic()], recorder: Recorder::default(), ..ctx.clone() };
    let retained_producer = Producers { first_id: 10, count: 1, idempotent: true };
    running.push(host.spawn(retained_producer.run(retained_ctx)));
    // The groups stop (and start draining) only once the producers are done, so the
    // drain knows every acknowledged record it has to settle.
    let group_ctx = WorkloadCtx { stop: StopFlag::default(), ..ctx.clone() };
    let workload: Box<dyn Workload> = match &group {
        GroupRun::Partitioned(spec) => Box::new(PartitionedGroup(spec.clone())),
        GroupRun::Shared(spec) => Box::new(SharedGroup(spec.clone())),
    };
    let groups = host.spawn(workload.run(group_ctx.clone()));
    let schedule = plan(n, cfg.nemesis, cfg.chaos);
    let mut nemesis = Nemesis::new(&cluster, trace.clone());
    let started = tokio::time::Instant::now();
    nemesis.run(&schedule, started).await;
    tokio::time::sleep_until(started + cfg.chaos).await;
    ctx.stop.stop();
    nemesis.heal();
    stats.faults = nemesis.applied.clone();
    for w in running {
        let _ = w.await;
    }
    group_ctx.stop.stop();
    let _ = groups.await;

    let probe_ctx = ctx.clone();
    let probes = host.spawn(async move { probe(&probe_ctx, LIVENESS_BOUND).await }).await.expect("probe task");
    record.liveness = Liveness { bound: LIVENESS_BOUND, probes };
    let (b, t) = (ctx.bootstrap.clone(), topics.clone());
    let final_log = host.spawn(async move { read_final(&b, &t, Duration::from_secs(60)).await }).await.expect("read");
    let dead = match &group {
        GroupRun::Shared(spec) => {
            let (b, dlq) = (ctx.bootstrap.clone(), spec.dead_letter_topic());
            Some(host.spawn(async move { read_dead_letters(&b, dlq).await }).await.expect("read dead letters"))
        }
        GroupRun::Partitioned(_) => None,
    };
    let all_topics: Vec<TopicSpec> = topics.iter().cloned().chain([retained_topic()]).collect();
    record.replicas = crate::replicas::read_replicas(&cluster, &all_topics, Duration::from_secs(30)).await;
    record.retention_topics = vec![RETAINED_TOPIC.to_string()];

    record.history = ctx.recorder.take();
    match dead {
        Some(Ok((topic, reads))) => {
            record.history.dead_letters.insert(topic, reads);
        }
        Some(Err(e)) => record.history.final_read_error = Some(e),
        None => {}
    }
    match final_log {
        Ok(log) => record.history.final_log = log,
        Err(e) => record.history.final_read_error = Some(e),
    }
    summarize(&record, &trace, &mut stats);
    let violations = check_all(&record);
    for v in &violations {
        trace.event(format!("violation {v}"));
    }
    stats.virtual_time = trace.elapsed();
    RunResult { seed, fingerprint: trace.fingerprint(), violations, stats }
}

/// A topic whose retention keeps only the newest few KiB, so leaders trim, snapshot and
/// purge all through the run. Its records are not in the history checkers' view (they are
/// meant to disappear); the replica checker compares every replica of it from its log start.
const RETAINED_TOPIC: &str = "r0";
const RETAINED_BYTES: u64 = 4096;

fn retained_topic() -> TopicSpec {
    TopicSpec { name: RETAINED_TOPIC.into(), partitions: 1 }
}

/// The consumer group a run exercises.
#[derive(Debug, Clone)]
enum GroupRun {
    Partitioned(GroupSpec),
    Shared(GroupSpec),
}

/// Each run exercises one kind of group on one topic, picked by the seed: both kinds at
/// once, or three members, made a seed cost 50-100% more CPU than the plain workload;
/// one group of two members costs about a third more.
fn group_run(topics: &[TopicSpec]) -> GroupRun {
    let t = &topics[thread_rng().gen_range(0..topics.len())];
    if thread_rng().gen_bool(0.5) {
        GroupRun::Shared(GroupSpec { name: "gs".into(), topic: t.name.clone(), members: 2 })
    } else {
        GroupRun::Partitioned(GroupSpec { name: "gp".into(), topic: t.name.clone(), members: 2 })
    }
}

/// Reads the shared group's dead-letter topic to its end after heal.
async fn read_dead_letters(bootstrap: &[String], topic: String) -> Result<(String, Vec<Read>), String> {
    let spec = TopicSpec { name: topic.clone(), partitions: 1 };
    let log = read_final(bootstrap, &[spec], Duration::from_secs(30)).await?;
    Ok((topic, log.into_values().flatten().collect()))
}

/// Creates the topics and groups before any fault (retrying while the cluster forms).
async fn create_topics(ctx: WorkloadCtx, group: GroupRun) -> Result<(), String> {
    let client = Client::new(client_config(&ctx.bootstrap)).map_err(|e| e.to_string())?;
    for t in &ctx.topics {
        let mut tries = 0;
        loop {
            match client.admin().create_topic(&t.name, t.partitions, 3, 0, 0).await {
                Ok(_) => break,
                // An earlier try whose answer was lost created it.
                Err(e) if tries > 0 && e.code() == Some(tidemark_client::ErrorCode::TopicExists) => break,
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::info!(topic = %t.name, error = %e, "create topic failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(format!("creating topic {}: {e}", t.name)),
            }
        }
        ctx.trace.event(format!("topic {} created with {} partitions", t.name, t.partitions));
    }
    let settings = tidemark_client::TopicSettings { retention_bytes: RETAINED_BYTES, ..Default::default() };
    let mut tries = 0;
    while let Err(e) = client.admin().create_topic_with(RETAINED_TOPIC, 1, 3, settings).await {
        match e.code() {
            Some(tidemark_client::ErrorCode::TopicExists) if tries > 0 => break,
            _ if tries < 5 => tries += 1,
            _ => return Err(format!("creating topic {RETAINED_TOPIC}: {e}")),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    match &group {
        GroupRun::Partitioned(spec) => create_group(&ctx, spec, false).await,
        GroupRun::Shared(spec) => create_group(&ctx, spec, true).await,
    }
}

/// Folds the observations into the trace (so the fingerprint covers them) and the stats.
fn summarize(record: &RunRecord, trace: &Trace, stats: &mut RunStats) {
    let h = &record.history;
    stats.acked = h.sends.iter().filter(|s| s.acked_offset().is_some()).count();
    stats.in_flight = h.sends.len() - stats.acked;
    stats.reads = h.reads.len();
    stats.anomalies = h.anomalies.clone();
    for ((topic, p), reads) in &h.final_log {
        trace.event(format!("final {topic}/{p}: {} records", reads.len()));
    }
    for (topic, p, result) in &record.liveness.probes {
        trace.event(format!("probe {topic}/{p}: {}", if result.is_ok() { "ok" } else { "failed" }));
    }
    trace.event(format!("sends {} acked {} reads {}", h.sends.len(), stats.acked, stats.reads));
    let dead: usize = h.dead_letters.values().map(Vec::len).sum();
    let (group, shared) = (h.group_deliveries.len(), h.shared_deliveries.len());
    trace.event(format!("group deliveries {group}, shared deliveries {shared}, dead letters {dead}"));
}
