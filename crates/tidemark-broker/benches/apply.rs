//! The partition state machine's apply of append commands: it runs once per replicated
//! batch on every replica, on the Raft apply path, so it caps a partition's batch rate.
//! Apply reads only the batch header (the records stay in the log), assigns offsets,
//! indexes the batch and, for idempotent producers, judges the sequence against the
//! producer table (append, or answer a retry as a duplicate).
//!
//! Run: `cargo bench -p tidemark-broker --bench apply -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tidemark_broker::partition::{append_command, PartitionLogic, PartitionShared};
use tidemark_raft::{Command, StateMachineLogic};
use tidemark_types::{Record, RecordBatchBuilder};

/// Records per batch (apply cost does not depend on their size: only the header is read).
const RECORDS: usize = 100;
const EXPIRY_MS: i64 = 60_000;
/// Commands built ahead of each timed chunk (building is not what is measured).
const CHUNK: u64 = 4096;

fn batch(producer: Option<(i64, i16, i32)>) -> Bytes {
    let mut b = RecordBatchBuilder::new();
    for _ in 0..RECORDS {
        b.push(Record { value: Bytes::from_static(b"0123456789abcdef"), timestamp_ms: 1, ..Default::default() });
    }
    b.build(producer)
}

/// Times `iters` applies of fresh commands, `make(n)` building the n-th one, on one
/// partition whose state carries over between chunks (as on a live replica).
fn apply_fresh(iters: u64, make: impl Fn(u64) -> Command) -> Duration {
    let mut logic = PartitionLogic(PartitionShared::new());
    let (mut total, mut n) = (Duration::ZERO, 0u64);
    while n < iters {
        let commands: Vec<Command> = (n..(n + CHUNK).min(iters)).map(&make).collect();
        let start = Instant::now();
        for c in &commands {
            n += 1;
            black_box(logic.apply(n, c));
        }
        total += start.elapsed();
    }
    total
}

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("partition_apply_100_records");
    g.throughput(Throughput::Elements(1));
    let plain = append_command(&batch(None), 1_000, EXPIRY_MS);
    g.bench_function("plain", |b| b.iter_custom(|iters| apply_fresh(iters, |_| plain.clone())));
    g.bench_function("idempotent_1_producer", |b| {
        b.iter_custom(|iters| {
            apply_fresh(iters, |n| append_command(&batch(Some((1, 0, (n * RECORDS as u64) as i32))), 1_000, EXPIRY_MS))
        })
    });
    g.bench_function("idempotent_1000_producers", |b| {
        b.iter_custom(|iters| {
            apply_fresh(iters, |n| {
                let (pid, round) = ((n % 1000) as i64, n / 1000);
                append_command(&batch(Some((pid, 0, (round * RECORDS as u64) as i32))), 1_000, EXPIRY_MS)
            })
        })
    });
    // A retry of a batch still in the dedup window: answered from the table, nothing appended.
    let mut logic = PartitionLogic(PartitionShared::new());
    let first = append_command(&batch(Some((1, 0, 0))), 1_000, EXPIRY_MS);
    logic.apply(1, &first);
    let mut index = 1;
    g.bench_function("idempotent_duplicate", |b| {
        b.iter(|| {
            index += 1;
            black_box(logic.apply(index, &first))
        })
    });
    g.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
