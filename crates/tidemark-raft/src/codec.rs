//! The one way to decode bincode bytes that came from a peer or from the disk.
//!
//! Everything Raft sends (appends, votes, snapshots, their answers) and everything it
//! keeps (log entries, votes, checkpoints) is written with `bincode::serialize`. The bytes
//! read back may be hostile or damaged, so they are decoded here, with the same wire
//! format and a hard limit on how much the decoder may read:
//!
//! - **Wire format.** `bincode::serialize`/`bincode::deserialize` (bincode 1) use fixed-size
//!   little-endian integers and accept trailing bytes; `options` below spells out exactly that
//!   (`tests/codec_fuzz.rs` proves it on the real message types), so old and new nodes,
//!   and old files, keep understanding each other.
//! - **Limit.** bincode counts every byte it consumes, so a well-formed message never needs
//!   more than its own length, and the limit is exactly that. What a hostile length prefix
//!   (say 2^60) can still cost does not depend on the claim: a byte string
//!   (`Bytes`, `String`) longer than what is left is refused before its buffer exists, and
//!   a sequence preallocates at most 1 MiB (serde's cap) before failing on the first
//!   missing element. bincode 1.3's slice reader already refuses the long byte string on
//!   its own; the limit makes that bound ours rather than an accident of its internals.

use bincode::Options;
use serde::de::DeserializeOwned;

/// Decodes `bytes` written by `bincode::serialize`. Trailing bytes are ignored, as
/// `bincode::deserialize` ignores them.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::Error> {
    options(bytes.len()).deserialize(bytes)
}

/// `bincode::deserialize`'s configuration, limited to reading `len` bytes.
fn options(len: usize) -> impl Options {
    bincode::DefaultOptions::new().with_fixint_encoding().allow_trailing_bytes().with_limit(len as u64)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::checkpoint::Payload;

    /// A snapshot payload whose data claims `claimed` bytes: the shape a hostile or torn
    /// snapshot takes.
    fn payload_claiming(claimed: u64) -> Vec<u8> {
        let mut bytes = 7u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&claimed.to_le_bytes());
        bytes.extend_from_slice(b"tail");
        bytes
    }

    #[test]
    fn a_hostile_length_is_an_error_not_an_allocation() {
        for claimed in [u64::MAX, 1 << 60, 1 << 40, 5] {
            let err = decode::<Payload>(&payload_claiming(claimed)).unwrap_err();
            assert!(
                matches!(*err, bincode::ErrorKind::SizeLimit | bincode::ErrorKind::Io(_)),
                "claimed {claimed}: {err}"
            );
        }
        // The honest length decodes: the limit is the input's own size, never less.
        let ok = decode::<Payload>(&payload_claiming(4)).unwrap();
        assert_eq!((ok.applied_through, ok.data), (7, b"tail".to_vec()));
    }

    proptest! {
        /// The snapshot payload a state machine installs (see `state_machine.rs`) decodes
        /// to what `bincode::serialize` wrote, with or without trailing bytes.
        #[test]
        fn snapshot_payloads_are_wire_compatible(
            applied_through in any::<u64>(),
            data in proptest::collection::vec(any::<u8>(), 0..256),
            trailing in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut bytes = bincode::serialize(&Payload { applied_through, data: data.clone() }).unwrap();
            bytes.extend_from_slice(&trailing);
            let back: Payload = decode(&bytes).unwrap();
            prop_assert_eq!((back.applied_through, back.data), (applied_through, data));
        }

        /// Arbitrary bytes are a value or an error, never a panic, and agree with
        /// `bincode::deserialize` on which.
        #[test]
        fn arbitrary_bytes_decode_like_bincode(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let ours = decode::<Payload>(&bytes).ok().map(|p| (p.applied_through, p.data));
            let theirs = bincode::deserialize::<Payload>(&bytes).ok().map(|p| (p.applied_through, p.data));
            prop_assert_eq!(ours, theirs);
        }
    }
}
