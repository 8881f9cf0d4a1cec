//! The record batch hot paths: the producer encodes each batch once, the leader validates
//! its CRC and shape before replicating it, consumers decode it, and a producer renumbers
//! (restamps) batches after a fencing or reset. These run per batch on every produce, so
//! their cost bounds what one core can push.
//!
//! Run: `cargo bench -p tidemark-types --bench batch -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tidemark_types::{decode_records, restamp, BatchHeader, BatchLimits, Record, RecordBatchBuilder};

const RECORDS: usize = 100;
const VALUE_BYTES: usize = 1024;

/// 100 records of 1 KiB with a small key: the shape `tidemark bench produce` sends.
fn records() -> Vec<Record> {
    (0..RECORDS)
        .map(|i| Record {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Bytes::from(vec![(i % 251) as u8; VALUE_BYTES]),
            headers: Vec::new(),
            timestamp_ms: 1_700_000_000_000 + i as i64,
        })
        .collect()
}

fn batch(c: &mut Criterion) {
    let records = records();
    let mut builder = RecordBatchBuilder::new();
    for r in &records {
        builder.push(r.clone());
    }
    let encoded = builder.build(Some((7, 0, 0)));
    let limits = BatchLimits::default();

    let mut g = c.benchmark_group("batch_100x1KiB");
    g.throughput(Throughput::Bytes(encoded.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| {
            let mut builder = RecordBatchBuilder::new();
            for r in &records {
                builder.push(r.clone());
            }
            black_box(builder.build(Some((7, 0, 0))))
        })
    });
    g.bench_function("validate_crc32c", |b| b.iter(|| BatchHeader::validate(black_box(&encoded), &limits).unwrap()));
    g.bench_function("decode", |b| b.iter(|| decode_records(black_box(&encoded)).unwrap()));
    g.bench_function("restamp", |b| b.iter(|| restamp(black_box(&encoded), (8, 1, 500))));
    g.finish();
}

criterion_group!(benches, batch);
criterion_main!(benches);
