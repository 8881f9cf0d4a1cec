//! Property tests of [`tidemark_raft::codec::decode`] on the messages Raft really sends:
//! it reads exactly what `bincode::serialize` writes (so nodes, and files, from before the
//! switch keep working), and bytes from a hostile or broken peer are an error, never a
//! panic, and never an allocation sized by what a length prefix claims.
//!
//! Allocation is measured, not guessed: this binary's global allocator counts the bytes
//! each thread holds, so a test can ask what one decode cost at its peak.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::alias::CommittedLeaderIdOf;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, StreamAppendError, VoteRequest, VoteResponse};
use openraft::vote::RaftLeaderId;
use openraft::{BasicNode, EntryPayload, Membership};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tidemark_raft::codec::decode;
use tidemark_raft::types::{Command, Entry, LogId, SnapshotMeta, StoredMembership, TypeConfig, Vote};

/// The most one decode of a hostile message may hold at once. serde preallocates at most
/// 1 MiB per sequence whatever the prefix claims, and a Raft message nests at most two
/// sequences (entries, then a membership's configs); the real data of the small inputs
/// here is a few KiB more.
const PEAK_LIMIT: usize = 3 << 20;

struct Counting;

thread_local! {
    static HELD: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn count(grow: usize, shrink: usize) {
    let _ = HELD.try_with(|held| {
        let now = (held.get() + grow).saturating_sub(shrink);
        held.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call goes straight to `System`; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size(), 0);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size(), 0);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(0, layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size, layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns what it returned, the most it held above what this thread held
/// before, and how long it took.
fn measured<R>(f: impl FnOnce() -> R) -> (R, usize, Duration) {
    let base = HELD.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    (r, PEAK.with(Cell::get) - base, took)
}

/// Decodes hostile `bytes` as `T`, asserting the decode stayed within [`PEAK_LIMIT`], and
/// says whether it succeeded (the result itself is dropped inside the measurement).
fn decodes_within_limit<T: DeserializeOwned>(bytes: &[u8]) -> bool {
    let (ok, peak, _) = measured(|| decode::<T>(bytes).is_ok());
    assert!(peak <= PEAK_LIMIT, "decoding {} bytes held {peak} bytes at once", bytes.len());
    ok
}

/// `bincode::serialize`, then the helper, then `bincode::serialize` again: the helper read
/// back exactly what was written (the encoding has one form per value).
fn round_trips<T: Serialize + DeserializeOwned>(value: &T) -> Result<T, TestCaseError> {
    let bytes = bincode::serialize(value).unwrap();
    let back: T = decode(&bytes).map_err(|e| TestCaseError::fail(format!("valid message refused: {e}")))?;
    prop_assert_eq!(bincode::serialize(&back).unwrap(), bytes);
    Ok(back)
}

fn log_id() -> impl Strategy<Value = LogId> {
    (any::<u64>(), any::<u64>(), any::<u64>())
        .prop_map(|(term, node, index)| LogId::new(CommittedLeaderIdOf::<TypeConfig>::new(term, node), index))
}

fn vote() -> impl Strategy<Value = Vote> {
    (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(term, node, committed)| {
        if committed {
            Vote::new_committed(term, node)
        } else {
            Vote::new(term, node)
        }
    })
}

/// A valid membership: joint configs of voters, plus learners, every one with an address.
fn membership() -> impl Strategy<Value = Membership<u64, BasicNode>> {
    (vec(btree_set(0u64..8, 1..4), 1..3), btree_set(0u64..12, 0..3), "[a-z0-9.:-]{0,24}").prop_map(
        |(configs, learners, host)| {
            let ids = configs.iter().flatten().chain(&learners).copied();
            let nodes: BTreeMap<u64, BasicNode> = ids.map(|id| (id, BasicNode::new(format!("{host}:{id}")))).collect();
            Membership::new(configs, nodes).expect("every voter has a node")
        },
    )
}

fn entry() -> impl Strategy<Value = Entry> {
    let payload = prop_oneof![
        Just(EntryPayload::Blank),
        vec(any::<u8>(), 0..64).prop_map(|b| EntryPayload::Normal(Command(Bytes::from(b)))),
        membership().prop_map(EntryPayload::Membership),
    ];
    (log_id(), payload).prop_map(|(log_id, payload)| Entry { log_id, payload })
}

fn append_request() -> impl Strategy<Value = AppendEntriesRequest<TypeConfig>> {
    (vote(), proptest::option::of(log_id()), vec(entry(), 0..4), proptest::option::of(log_id())).prop_map(
        |(vote, prev_log_id, entries, leader_commit)| AppendEntriesRequest {
            vote,
            prev_log_id,
            entries,
            leader_commit,
        },
    )
}

/// What `network.rs` sends for a full snapshot: `(vote, meta, data)`.
fn snapshot_message() -> impl Strategy<Value = (Vote, SnapshotMeta, Vec<u8>)> {
    let meta = (proptest::option::of(log_id()), proptest::option::of(log_id()), membership()).prop_map(
        |(last_log_id, membership_log_id, m)| SnapshotMeta {
            last_log_id,
            last_membership: StoredMembership::new(membership_log_id, m),
        },
    );
    (vote(), meta, vec(any::<u8>(), 0..256))
}

/// A valid request with one entry of each kind, and where its entry count sits: after
/// the vote and the previous log id, which are encoded first.
fn request_with_entry_count() -> (Vec<u8>, usize) {
    let id = LogId::new(CommittedLeaderIdOf::<TypeConfig>::new(3, 1), 9);
    let nodes = BTreeMap::from([(1, BasicNode::new("a")), (2, BasicNode::new("b"))]);
    let m = Membership::new(vec![[1, 2].into()], nodes).unwrap();
    let entries = vec![
        Entry { log_id: id, payload: EntryPayload::Normal(Command(Bytes::from_static(b"batch"))) },
        Entry { log_id: id, payload: EntryPayload::Membership(m) },
    ];
    let req = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(id),
        entries,
        leader_commit: None,
    };
    let at = bincode::serialized_size(&(req.vote, req.prev_log_id)).unwrap() as usize;
    let bytes = bincode::serialize(&req).unwrap();
    assert_eq!(u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()), 2, "the entry count is where we think");
    (bytes, at)
}

/// The regression for the worry: an AppendEntries claiming 2^60 entries, or a
/// snapshot claiming 2^60 bytes, is refused at once, holding no more than serde's
/// preallocation cap.
#[test]
fn a_hostile_length_prefix_is_an_error_not_an_allocation() {
    let (mut bytes, at) = request_with_entry_count();
    for claimed in [1u64 << 60, u64::MAX, 3] {
        bytes[at..at + 8].copy_from_slice(&claimed.to_le_bytes());
        let (result, peak, took) = measured(|| decode::<AppendEntriesRequest<TypeConfig>>(&bytes).map(|_| ()));
        assert!(result.is_err(), "{claimed} entries in {} bytes decoded", bytes.len());
        assert!(peak <= PEAK_LIMIT && took < Duration::from_secs(1), "claimed {claimed}: held {peak} B for {took:?}");
    }

    let mut snapshot = bincode::serialize(&(Vote::new(1, 1), SnapshotMeta::default(), b"state".to_vec())).unwrap();
    let at = snapshot.len() - b"state".len() - 8;
    snapshot[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let (result, peak, took) = measured(|| decode::<(Vote, SnapshotMeta, Vec<u8>)>(&snapshot).map(|_| ()));
    assert!(result.is_err());
    assert!(peak <= PEAK_LIMIT && took < Duration::from_secs(1), "held {peak} B for {took:?}");
}

/// A command (`Bytes`) claiming 2^60 bytes is refused before any buffer is made for it.
#[test]
fn a_hostile_command_length_allocates_nothing_for_it() {
    let (mut bytes, _) = request_with_entry_count();
    let at = bytes.windows(5).position(|w| w == b"batch").unwrap() - 8;
    bytes[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let (result, peak, _) = measured(|| decode::<AppendEntriesRequest<TypeConfig>>(&bytes).map(|_| ()));
    assert!(result.is_err());
    assert!(peak < 64 << 10, "held {peak} bytes for a refused command");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn append_requests_are_wire_compatible(req in append_request()) {
        round_trips(&req)?;
    }

    #[test]
    fn vote_requests_are_wire_compatible(vote in vote(), last in proptest::option::of(log_id()), transfer: bool) {
        let req = VoteRequest::<TypeConfig> { vote, last_log_id: last, leadership_transfer: transfer };
        prop_assert_eq!(round_trips(&req)?, req);
    }

    #[test]
    fn snapshots_are_wire_compatible(msg in snapshot_message()) {
        prop_assert_eq!(round_trips(&msg)?, msg);
    }

    /// The replies `network.rs` and `pipeline.rs` decode.
    #[test]
    fn replies_are_wire_compatible(vote in vote(), id in proptest::option::of(log_id()), kind in 0u8..4, granted: bool) {
        let append = match kind {
            0 => AppendEntriesResponse::<TypeConfig>::Success,
            1 => AppendEntriesResponse::PartialSuccess(id),
            2 => AppendEntriesResponse::Conflict,
            _ => AppendEntriesResponse::HigherVote(vote),
        };
        round_trips(&append)?;
        let stream: Result<Option<LogId>, StreamAppendError<TypeConfig>> = match (kind, id) {
            (0, _) => Ok(id),
            (1, Some(at)) => Err(StreamAppendError::Conflict(at)),
            _ => Err(StreamAppendError::HigherVote(vote)),
        };
        prop_assert_eq!(round_trips(&stream)?, stream);
        round_trips(&VoteResponse::<TypeConfig> { vote, vote_granted: granted, last_log_id: id })?;
    }

    /// Trailing bytes are ignored, as `bincode::deserialize` ignores them.
    #[test]
    fn trailing_bytes_are_ignored(req in append_request(), tail in vec(any::<u8>(), 1..16)) {
        let mut bytes = bincode::serialize(&req).unwrap();
        let len = bytes.len();
        bytes.extend_from_slice(&tail);
        let back: AppendEntriesRequest<TypeConfig> = decode(&bytes).unwrap();
        prop_assert_eq!(bincode::serialize(&back).unwrap(), &bytes[..len]);
    }

    /// A message cut short (a torn read, a dropped frame) is always an error.
    #[test]
    fn every_truncation_is_an_error(msg in snapshot_message(), cut in any::<prop::sample::Index>()) {
        let bytes = bincode::serialize(&msg).unwrap();
        let len = cut.index(bytes.len());
        prop_assert!(decode::<(Vote, SnapshotMeta, Vec<u8>)>(&bytes[..len]).is_err());
    }

    /// Any 8 bytes of a valid append overwritten with a huge number (a length prefix gone
    /// wild, or a hostile one): no panic, and the decode stays within the peak limit.
    #[test]
    fn a_huge_number_anywhere_is_bounded(req in append_request(), at in any::<prop::sample::Index>(), shift in 32u32..64) {
        let mut bytes = bincode::serialize(&req).unwrap();
        let at = at.index(bytes.len() - 7);
        bytes[at..at + 8].copy_from_slice(&(1u64 << shift).to_le_bytes());
        decodes_within_limit::<AppendEntriesRequest<TypeConfig>>(&bytes);
        decodes_within_limit::<(Vote, SnapshotMeta, Vec<u8>)>(&bytes);
    }

    /// Arbitrary bytes: no panic, bounded, and the same verdict as `bincode::deserialize`.
    #[test]
    fn arbitrary_bytes_are_bounded_and_judged_like_bincode(bytes in vec(any::<u8>(), 0..512)) {
        let ours = decodes_within_limit::<AppendEntriesRequest<TypeConfig>>(&bytes);
        prop_assert_eq!(ours, bincode::deserialize::<AppendEntriesRequest<TypeConfig>>(&bytes).is_ok());
        let ours = decodes_within_limit::<(Vote, SnapshotMeta, Vec<u8>)>(&bytes);
        prop_assert_eq!(ours, bincode::deserialize::<(Vote, SnapshotMeta, Vec<u8>)>(&bytes).is_ok());
        decodes_within_limit::<VoteRequest<TypeConfig>>(&bytes);
    }
}
