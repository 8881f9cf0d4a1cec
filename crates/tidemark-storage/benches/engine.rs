//! The storage engine under the Raft log: every replicated batch is one `write` into the
//! log tree, a group commit ends in one `flush` (fsync), fetches read key ranges, and
//! retention purges the prefix with `delete_range`. Measured on the segmented engine
//! (production: segment log + sled), plain sled (the earlier production engine) and the
//! memory engine (the simulation's) for comparison.
//!
//! Run: `cargo bench -p tidemark-storage --bench engine -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidemark_storage::{Engine, MemoryEngine, WriteBatch};

const TREE: &str = "raft_log";
/// Entries per group commit and bytes per entry: eight produce batches of 16 KiB.
const ENTRIES: u64 = 8;
const ENTRY_BYTES: usize = 16 * 1024;
/// Entries kept before the append benches purge the prefix, as retention would; keeps the
/// sled directory bounded however many iterations criterion runs.
const RETAINED: u64 = 4096;

/// The log store's key: group (u64 BE) ++ index (u64 BE), so one group's log is contiguous.
fn key(group: u64, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

/// One group commit worth of entries at `next..next + ENTRIES`.
fn append(engine: &dyn Engine, next: &mut u64, value: &[u8]) {
    let mut batch = WriteBatch::new();
    for i in *next..*next + ENTRIES {
        batch.put(key(1, i).to_vec(), value.to_vec());
    }
    engine.write(TREE, batch).unwrap();
    *next += ENTRIES;
    if (*next).is_multiple_of(RETAINED) {
        engine.delete_range(TREE, &key(1, 0), Some(&key(1, *next - RETAINED / 2))).unwrap();
        // Also bounds the memory engine's list of unsynced ops (its crash model), which
        // would otherwise grow for the whole "write" run and time allocation, not writes.
        engine.flush().unwrap();
    }
}

/// Every engine; sled ones only off madsim (it is not built there, its threads are forbidden).
fn engines(dir: &std::path::Path) -> Vec<(&'static str, Arc<dyn Engine>)> {
    let memory: (&'static str, Arc<dyn Engine>) = ("memory", Arc::new(MemoryEngine::new()));
    #[cfg(not(madsim))]
    return vec![
        (
            "segmented",
            Arc::new(
                tidemark_storage::SegmentedEngine::open_data_dir(
                    &dir.join("seg"),
                    TREE,
                    tidemark_storage::segment::DEFAULT_SEGMENT_BYTES,
                )
                .unwrap(),
            ),
        ),
        ("sled", Arc::new(tidemark_storage::SledEngine::open(&dir.join("sled")).expect("open sled in a temp dir"))),
        memory,
    ];
    #[cfg(madsim)]
    {
        let _ = dir;
        vec![memory]
    }
}

fn append_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let value = vec![7u8; ENTRY_BYTES];
    let mut g = c.benchmark_group("engine_append_8x16KiB");
    g.throughput(Throughput::Bytes(ENTRIES * ENTRY_BYTES as u64));
    for (name, engine) in engines(dir.path()) {
        let mut next = 0u64;
        g.bench_function(BenchmarkId::new("write", name), |b| b.iter(|| append(&*engine, &mut next, &value)));
        g.bench_function(BenchmarkId::new("write_flush", name), |b| {
            b.iter(|| {
                append(&*engine, &mut next, &value);
                engine.flush().unwrap()
            })
        });
    }
    g.finish();
}

fn read_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let value = vec![7u8; ENTRY_BYTES];
    let mut g = c.benchmark_group("engine_read_range_64x16KiB");
    g.throughput(Throughput::Bytes(64 * ENTRY_BYTES as u64));
    for (name, engine) in engines(dir.path()) {
        let mut next = 0u64;
        while next < 2048 {
            append(&*engine, &mut next, &value);
        }
        engine.flush().unwrap();
        let mut at = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                // Walk the log like a consumer catching up, wrapping at the end.
                at = (at + 64) % (next - 64);
                let rows = engine.range(TREE, &key(1, at), Some(&key(1, u64::MAX)), 64).unwrap();
                assert_eq!(rows.len(), 64);
                black_box(rows)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, append_benches, read_benches);
criterion_main!(benches);
