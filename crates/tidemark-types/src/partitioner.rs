//! The key partitioner. It must never change: a key's partition is part of the user's
//! ordering contract, and every SDK (in any language) must compute the same answer.
//! FNV-1a (64 bit) is tiny, well specified and easy to reimplement.

use crate::PartitionId;

/// FNV-1a 64-bit hash of `key`.
pub fn fnv1a64(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The partition a key belongs to among `partitions` (which must be at least 1).
pub fn partition_for_key(key: &[u8], partitions: u32) -> PartitionId {
    (fnv1a64(key) % partitions.max(1) as u64) as PartitionId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors_never_change() {
        // Published FNV-1a test vectors: changing the hash would move users' keys.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn spreads_keys_and_stays_in_range() {
        let mut seen = [0u32; 4];
        for i in 0..1000 {
            let p = partition_for_key(format!("key-{i}").as_bytes(), 4);
            seen[p as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 150), "{seen:?}");
        assert_eq!(partition_for_key(b"x", 1), 0);
    }
}
