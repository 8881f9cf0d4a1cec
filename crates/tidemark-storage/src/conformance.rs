//! The engine conformance suite: the behaviour every [`Engine`] must share, so code tested
//! on the memory engine in the simulation behaves the same on sled in production.
//!
//! Always compiled (it is small) so other crates' tests can run it against their own
//! engine wrappers. Every check panics with a message naming the violated property.

use crate::{Engine, SharedEngine, WriteBatch};

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One named check of the suite.
type Check = (&'static str, fn(&dyn Engine));

/// Runs every check, each on a fresh engine from `make`.
pub fn run_all(make: &dyn Fn() -> SharedEngine) {
    let checks: &[Check] = &[
        ("get_put_delete", get_put_delete),
        ("overwrite", overwrite),
        ("tree_isolation", tree_isolation),
        ("range_bounds", range_bounds),
        ("byte_ordering", byte_ordering),
        ("last_in_range", last_in_range),
        ("delete_range", delete_range),
        ("write_batch", write_batch),
        ("empty_values", empty_values),
        ("large_values", large_values),
        ("many_keys", many_keys),
        ("flush_ok", flush_ok),
        #[cfg(not(madsim))]
        ("batch_atomic_under_concurrent_reads", batch_atomic_under_concurrent_reads),
    ];
    for (name, check) in checks {
        let engine = make();
        tracing::debug!(check = name, "storage conformance");
        check(&*engine);
    }
}

fn get(e: &dyn Engine, tree: &str, key: &[u8]) -> Option<Vec<u8>> {
    e.get(tree, key).expect("get failed")
}

fn put(e: &dyn Engine, tree: &str, key: &[u8], value: &[u8]) {
    e.put(tree, key, value).expect("put failed");
}

fn range(e: &dyn Engine, tree: &str, start: &[u8], end: Option<&[u8]>, limit: usize) -> Entries {
    e.range(tree, start, end, limit).expect("range failed")
}

fn keys(entries: &Entries) -> Vec<Vec<u8>> {
    entries.iter().map(|(k, _)| k.clone()).collect()
}

fn kv(k: &[u8], v: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (k.to_vec(), v.to_vec())
}

/// Missing keys and never-written trees read as absent; put then get; delete removes;
/// deleting an absent key is not an error.
pub fn get_put_delete(e: &dyn Engine) {
    assert_eq!(get(e, "never", b"k"), None, "read from a never-written tree");
    assert_eq!(range(e, "never", b"", None, 10), vec![], "range of a never-written tree");
    assert_eq!(get(e, "t", b"k"), None, "missing key must be None");
    put(e, "t", b"k", b"v");
    assert_eq!(get(e, "t", b"k"), Some(b"v".to_vec()), "get after put");
    e.delete("t", b"k").expect("delete failed");
    assert_eq!(get(e, "t", b"k"), None, "get after delete");
    e.delete("t", b"k").expect("deleting an absent key must succeed");
    e.delete("never2", b"k").expect("delete in a never-written tree must succeed");
}

/// A second put replaces the value, including with a shorter one.
pub fn overwrite(e: &dyn Engine) {
    put(e, "t", b"k", b"first-long-value");
    put(e, "t", b"k", b"2");
    assert_eq!(get(e, "t", b"k"), Some(b"2".to_vec()), "overwrite must replace");
    assert_eq!(range(e, "t", b"", None, 10).len(), 1, "overwrite must not duplicate");
}

/// The same key in two trees holds independent values; deletes and range deletes stay
/// in their tree.
pub fn tree_isolation(e: &dyn Engine) {
    put(e, "a", b"k", b"in-a");
    put(e, "b", b"k", b"in-b");
    assert_eq!(get(e, "a", b"k"), Some(b"in-a".to_vec()), "tree a");
    assert_eq!(get(e, "b", b"k"), Some(b"in-b".to_vec()), "tree b");
    e.delete("a", b"k").expect("delete");
    assert_eq!(get(e, "b", b"k"), Some(b"in-b".to_vec()), "delete leaked across trees");
    put(e, "a", b"k2", b"x");
    e.delete_range("b", b"", None).expect("delete_range");
    assert_eq!(get(e, "a", b"k2"), Some(b"x".to_vec()), "delete_range leaked across trees");
    let mut batch = WriteBatch::new();
    batch.put(b"k".to_vec(), b"batch-a".to_vec());
    e.write("a", batch).expect("write");
    assert_eq!(get(e, "b", b"k"), None, "batch leaked across trees");
}

/// Inclusive start, exclusive end, unbounded end, limit, inverted and empty ranges.
pub fn range_bounds(e: &dyn Engine) {
    for k in [b"a", b"b", b"c", b"d", b"e"] {
        put(e, "t", k, k);
    }
    let all: Vec<Vec<u8>> = ["a", "b", "c", "d", "e"].map(|s| s.as_bytes().to_vec()).into();
    assert_eq!(keys(&range(e, "t", b"", None, 100)), all, "full range");
    assert_eq!(keys(&range(e, "t", b"b", Some(b"d"), 100)), all[1..3], "[b, d)");
    assert_eq!(keys(&range(e, "t", b"bb", Some(b"dd"), 100)), all[2..4], "[bb, dd)");
    assert_eq!(keys(&range(e, "t", b"c", None, 100)), all[2..], "[c, ..)");
    assert_eq!(keys(&range(e, "t", b"a", None, 2)), all[..2], "limit 2");
    assert_eq!(range(e, "t", b"a", None, 0), vec![], "limit 0");
    assert_eq!(range(e, "t", b"c", Some(b"c"), 100), vec![], "empty [c, c)");
    assert_eq!(range(e, "t", b"d", Some(b"b"), 100), vec![], "inverted [d, b)");
    assert_eq!(range(e, "t", b"f", None, 100), vec![], "start past the last key");
    assert_eq!(range(e, "t", b"b", Some(b"c"), 100), vec![kv(b"b", b"b")], "values returned");
}

/// Keys order by bytes: big-endian u64 keys order numerically, a prefix sorts before its
/// extensions, 0xFF sorts last.
pub fn byte_ordering(e: &dyn Engine) {
    let nums: [u64; 6] = [u64::MAX, 256, 1, 0, 255, 1 << 40];
    for n in nums {
        put(e, "nums", &n.to_be_bytes(), b"");
    }
    let mut sorted = nums;
    sorted.sort_unstable();
    let want: Vec<Vec<u8>> = sorted.iter().map(|n| n.to_be_bytes().to_vec()).collect();
    assert_eq!(keys(&range(e, "nums", b"", None, 100)), want, "big-endian u64 order");

    for k in [&b"b"[..], b"a\x00", b"\xff", b"a", b"", b"ab"] {
        put(e, "bytes", k, b"");
    }
    let want: Vec<Vec<u8>> = [&b""[..], b"a", b"a\x00", b"ab", b"b", b"\xff"].iter().map(|k| k.to_vec()).collect();
    assert_eq!(keys(&range(e, "bytes", b"", None, 100)), want, "lexicographic byte order");
}

/// The greatest entry in [start, end): empty tree, empty range, exclusive end, None end.
pub fn last_in_range(e: &dyn Engine) {
    let last = |start: &[u8], end: Option<&[u8]>| e.last_in_range("t", start, end).expect("last");
    assert_eq!(last(b"", None), None, "empty tree");
    for n in [10u64, 20, 30] {
        put(e, "t", &n.to_be_bytes(), &n.to_le_bytes());
    }
    let k = |n: u64| n.to_be_bytes();
    let entry = |n: u64| Some(kv(&n.to_be_bytes(), &n.to_le_bytes()));
    assert_eq!(last(b"", None), entry(30), "unbounded end");
    assert_eq!(last(&k(0), Some(&k(30))), entry(20), "end is exclusive");
    assert_eq!(last(&k(0), Some(&k(31))), entry(30), "end past the last key");
    assert_eq!(last(&k(20), Some(&k(21))), entry(20), "start is inclusive");
    assert_eq!(last(&k(21), Some(&k(30))), None, "no key in [21, 30)");
    assert_eq!(last(&k(31), None), None, "start past the last key");
    assert_eq!(last(&k(30), Some(&k(10))), None, "inverted range");
    assert_eq!(e.last_in_range("other", b"", None).expect("last"), None, "other tree");
}

/// Removes exactly [start, end); None end removes the tail; empty / inverted is a no-op.
pub fn delete_range(e: &dyn Engine) {
    let k = |n: u64| n.to_be_bytes().to_vec();
    for n in 0..10u64 {
        put(e, "t", &k(n), b"v");
    }
    let remaining = |e: &dyn Engine| -> Vec<Vec<u8>> { keys(&range(e, "t", b"", None, 100)) };
    e.delete_range("t", &k(5), Some(&k(5))).expect("empty delete_range");
    e.delete_range("t", &k(7), Some(&k(3))).expect("inverted delete_range");
    assert_eq!(remaining(e).len(), 10, "empty / inverted delete_range must do nothing");
    e.delete_range("t", &k(2), Some(&k(5))).expect("delete_range");
    let want: Vec<_> = [0, 1, 5, 6, 7, 8, 9].map(k).into();
    assert_eq!(remaining(e), want, "delete_range [2, 5)");
    e.delete_range("t", &k(8), None).expect("delete_range tail");
    let want: Vec<_> = [0, 1, 5, 6, 7].map(k).into();
    assert_eq!(remaining(e), want, "delete_range [8, ..)");
    e.delete_range("t", &k(100), None).expect("delete_range past the end");
    e.delete_range("t", b"", None).expect("delete_range all");
    assert_eq!(remaining(e), Vec::<Vec<u8>>::new(), "delete_range everything");
    put(e, "t", &k(3), b"again");
    assert_eq!(get(e, "t", &k(3)), Some(b"again".to_vec()), "write after delete_range");
}

/// A batch applies all its ops; ops apply in order (last op on a key wins); an empty
/// batch is fine.
pub fn write_batch(e: &dyn Engine) {
    put(e, "t", b"old", b"1");
    put(e, "t", b"keep", b"1");
    let mut batch = WriteBatch::new();
    assert!(batch.is_empty(), "new batch is empty");
    batch.put(b"a".to_vec(), b"1".to_vec());
    batch.put(b"b".to_vec(), b"2".to_vec());
    batch.delete(b"old".to_vec());
    batch.put(b"gone".to_vec(), b"x".to_vec());
    batch.delete(b"gone".to_vec());
    batch.delete(b"back".to_vec());
    batch.put(b"back".to_vec(), b"y".to_vec());
    batch.put(b"a".to_vec(), b"1b".to_vec());
    assert_eq!(batch.len(), 8, "len counts ops");
    e.write("t", batch).expect("write");
    let want = vec![kv(b"a", b"1b"), kv(b"b", b"2"), kv(b"back", b"y"), kv(b"keep", b"1")];
    assert_eq!(range(e, "t", b"", None, 100), want, "batch result");
    e.write("t", WriteBatch::new()).expect("empty batch");
    assert_eq!(range(e, "t", b"", None, 100), want, "empty batch changes nothing");
}

/// An empty value is present (Some(empty)), not absent.
pub fn empty_values(e: &dyn Engine) {
    put(e, "t", b"k", b"");
    assert_eq!(get(e, "t", b"k"), Some(Vec::new()), "empty value must read as Some");
    let mut batch = WriteBatch::new();
    batch.put(b"k2".to_vec(), Vec::new());
    e.write("t", batch).expect("write");
    assert_eq!(get(e, "t", b"k2"), Some(Vec::new()), "empty value via batch");
    let want = vec![kv(b"k", b""), kv(b"k2", b"")];
    assert_eq!(range(e, "t", b"", None, 10), want, "range shows empty values");
    assert_eq!(e.last_in_range("t", b"", None).expect("last"), Some(kv(b"k2", b"")));
}

/// 1 MiB values round-trip byte for byte, by put and by batch.
pub fn large_values(e: &dyn Engine) {
    let big: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    put(e, "t", b"big", &big);
    let mut batch = WriteBatch::new();
    batch.put(b"big2".to_vec(), big.clone());
    e.write("t", batch).expect("write");
    e.flush().expect("flush");
    assert!(get(e, "t", b"big") == Some(big.clone()), "1 MiB value via put corrupted");
    assert!(get(e, "t", b"big2") == Some(big.clone()), "1 MiB value via batch corrupted");
    let all = range(e, "t", b"", None, 10);
    assert!(all.len() == 2 && all[1].1 == big, "1 MiB value via range corrupted");
}

/// 10k keys: written by batch and by put, counted, paged through, range-deleted.
pub fn many_keys(e: &dyn Engine) {
    const N: u64 = 10_000;
    let k = |n: u64| n.to_be_bytes().to_vec();
    let mut batch = WriteBatch::new();
    for n in (0..N).step_by(2) {
        batch.put(k(n), n.to_le_bytes().to_vec());
    }
    e.write("t", batch).expect("write 5k batch");
    for n in (1..N).step_by(2) {
        put(e, "t", &k(n), &n.to_le_bytes());
    }
    // Page through in chunks, as the log store reads entries.
    let (mut next, mut seen, mut pages) = (k(0), 0u64, 0);
    loop {
        let page = range(e, "t", &next, None, 1000);
        let Some((last, _)) = page.last() else { break };
        for (i, (key, value)) in page.iter().enumerate() {
            let n = seen + i as u64;
            assert!(key == &k(n) && value == &n.to_le_bytes(), "entry {n} wrong while paging");
        }
        seen += page.len() as u64;
        pages += 1;
        next = last.clone();
        next.push(0); // the smallest key after `last`
    }
    assert_eq!((seen, pages), (N, 10), "10k keys in 10 pages of 1000");
    assert_eq!(e.last_in_range("t", b"", None).expect("last"), Some(kv(&k(N - 1), &(N - 1).to_le_bytes())));
    e.delete_range("t", &k(0), Some(&k(N / 2))).expect("delete_range half");
    let rest = range(e, "t", b"", None, usize::MAX);
    assert_eq!(rest.len() as u64, N / 2, "half left after delete_range");
    assert_eq!(rest[0].0, k(N / 2), "first remaining key");
}

/// `flush` succeeds with nothing written, after writes, and twice in a row.
pub fn flush_ok(e: &dyn Engine) {
    e.flush().expect("flush of an empty engine");
    put(e, "t", b"k", b"v");
    e.delete("t", b"absent").expect("delete");
    e.flush().expect("flush after writes");
    e.flush().expect("second flush");
    assert_eq!(get(e, "t", b"k"), Some(b"v".to_vec()), "flush must not change contents");
}

/// Readers never see part of a batch. A writer applies batches that set keys k0..k9 all to
/// the batch number; a reader reads k0, then k9 (and a range scan). If k0 shows batch `i`,
/// batch `i` had fully applied before the later read, so k9 must show `i` or newer. Both
/// engines apply a batch's keys in ascending order, so a torn batch would show k9 < k0.
#[cfg(not(madsim))]
pub fn batch_atomic_under_concurrent_reads(e: &dyn Engine) {
    const BATCHES: u64 = 300;
    let key = |i: u8| vec![b'k', i];
    let read =
        |i: u8| -> u64 { get(e, "t", &key(i)).map_or(0, |v| u64::from_be_bytes(v.try_into().expect("8 bytes"))) };
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for n in 1..=BATCHES {
                let mut batch = WriteBatch::new();
                for i in 0..10 {
                    batch.put(key(i), n.to_be_bytes().to_vec());
                }
                e.write("t", batch).expect("write");
            }
        });
        loop {
            let first = read(0);
            let last = read(9);
            assert!(last >= first, "torn batch: k0 shows batch {first}, k9 only {last}");
            let scan = range(e, "t", b"", None, 100);
            let values: Vec<u64> =
                scan.iter().map(|(_, v)| u64::from_be_bytes(v.as_slice().try_into().expect("8 bytes"))).collect();
            let torn = values.windows(2).any(|w| w[1] < w[0]);
            assert!(!torn && (values.is_empty() || values.len() == 10), "torn batch in scan: {values:?}");
            // Stop on the writer's exit too, so a failing writer cannot hang the reader;
            // the scope then re-raises its panic.
            if first == BATCHES || writer.is_finished() {
                break;
            }
        }
    });
    assert_eq!(read(0), BATCHES, "every batch applied");
}
