//! Property tests of the frame codec, which reads whatever is on the disk at open: a
//! payload decodes to exactly the ops it was built from, the decoder is a strict inverse
//! of [`FrameBuilder`] on anything it accepts, and no payload or header, however
//! damaged, panics it. File-level damage (torn tails, rotten index files) is in
//! `tests/frame_fuzz.rs`; chosen damage scenarios are in `tests/segment_damage.rs`.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::segment::sealed::Skeleton;

/// One op, owning its bytes: what a test writes and what it expects to read back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Spec {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    DeleteRange(Vec<u8>, Option<Vec<u8>>),
    Synced(u64, u64),
    PutRef(Vec<u8>, u64, u32, u32),
}

fn spec() -> impl Strategy<Value = Spec> {
    let key = || vec(any::<u8>(), 0..24);
    prop_oneof![
        (key(), vec(any::<u8>(), 0..64)).prop_map(|(k, v)| Spec::Put(k, v)),
        key().prop_map(Spec::Delete),
        (key(), proptest::option::of(key())).prop_map(|(s, e)| Spec::DeleteRange(s, e)),
        any::<(u64, u64)>().prop_map(|(s, l)| Spec::Synced(s, l)),
        (key(), any::<(u64, u32, u32)>()).prop_map(|(k, (p, l, c))| Spec::PutRef(k, p, l, c)),
    ]
}

/// The whole frame, header included, holding `specs`.
fn frame_of(specs: &[Spec]) -> Vec<u8> {
    let mut b = FrameBuilder::new(64);
    for s in specs {
        match s {
            Spec::Put(key, value) => b.op(&BatchOp::Put { key: key.clone(), value: value.clone() }).unwrap(),
            Spec::Delete(key) => b.op(&BatchOp::Delete { key: key.clone() }).unwrap(),
            Spec::DeleteRange(start, end) => b.delete_range(start, end.as_deref()).unwrap(),
            Spec::Synced(segment, len) => b.synced(*segment, *len),
            Spec::PutRef(key, pos, len, crc) => b.put_ref(key, *pos, *len, *crc).unwrap(),
        }
    }
    b.finish().unwrap()
}

/// What a decoded op says, with a put's value copied out of `payload`.
fn owned(payload: &[u8], op: &Op<'_>) -> Spec {
    match *op {
        Op::Put { key, value_at, value_len } => {
            Spec::Put(key.to_vec(), payload[value_at..value_at + value_len].to_vec())
        }
        Op::Delete { key } => Spec::Delete(key.to_vec()),
        Op::DeleteRange { start, end } => Spec::DeleteRange(start.to_vec(), end.map(<[u8]>::to_vec)),
        Op::Synced { segment, len } => Spec::Synced(segment, len),
        Op::PutRef { key, pos, len, crc } => Spec::PutRef(key.to_vec(), pos, len, crc),
    }
}

/// Decodes `payload`, never panicking, and checks what an accepted payload must satisfy:
/// every put's value lies inside it, and building the decoded ops again gives back
/// exactly these bytes (so nothing in them was skipped or guessed).
fn decode_checked(payload: &[u8]) -> std::result::Result<Option<Vec<Spec>>, TestCaseError> {
    let Ok(ops) = decode_ops(payload) else { return Ok(None) };
    for op in &ops {
        if let Op::Put { value_at, value_len, .. } = *op {
            prop_assert!(value_at + value_len <= payload.len());
        }
    }
    // The smallest op, a delete of the empty key, is 3 bytes.
    prop_assert!(ops.len() <= payload.len() / 3);
    let specs: Vec<Spec> = ops.iter().map(|op| owned(payload, op)).collect();
    prop_assert_eq!(&frame_of(&specs)[HEADER_LEN..], payload);
    Ok(Some(specs))
}

fn header_of(frame: &[u8]) -> [u8; HEADER_LEN] {
    frame[..HEADER_LEN].try_into().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_frame_holds_exactly_its_ops(specs in vec(spec(), 0..8)) {
        let frame = frame_of(&specs);
        let (len, crc) = parse_header(&header_of(&frame)).unwrap();
        let payload = &frame[HEADER_LEN..];
        prop_assert_eq!((len, crc), (payload.len(), crc32c::crc32c(payload)));
        prop_assert_eq!(decode_checked(payload)?, Some(specs));
    }

    /// A payload cut short decodes to nothing, or to the ops wholly before the cut.
    #[test]
    fn a_cut_payload_never_invents_an_op(specs in vec(spec(), 1..8), cut in any::<prop::sample::Index>()) {
        let frame = frame_of(&specs);
        let payload = &frame[HEADER_LEN..];
        if let Some(prefix) = decode_checked(&payload[..cut.index(payload.len())])? {
            prop_assert!(prefix.len() < specs.len());
            prop_assert_eq!(&prefix[..], &specs[..prefix.len()]);
        }
    }

    /// Overwritten bytes in a payload (what a CRC collision would let through): no panic,
    /// and anything accepted is canonical.
    #[test]
    fn a_damaged_payload_never_panics(
        specs in vec(spec(), 1..8),
        damage in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut payload = frame_of(&specs)[HEADER_LEN..].to_vec();
        for (at, byte) in damage {
            let at = at.index(payload.len());
            payload[at] = byte;
        }
        decode_checked(&payload)?;
    }

    #[test]
    fn arbitrary_payloads_never_panic(payload in vec(any::<u8>(), 0..128)) {
        decode_checked(&payload)?;
    }

    #[test]
    fn arbitrary_headers_never_panic(header: [u8; HEADER_LEN]) {
        if let Ok((len, _)) = parse_header(&header) {
            prop_assert_eq!(&header[..4], &MAGIC.to_le_bytes());
            prop_assert!(len <= MAX_PAYLOAD);
        }
    }

    /// One flipped bit anywhere in a frame is caught by the checks the frame reader makes
    /// (see `recover.rs`): the header, the length against what is there, the CRC.
    #[test]
    fn a_flipped_bit_is_caught_by_the_frame_checks(
        specs in vec(spec(), 0..8),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut frame = frame_of(&specs);
        let at = at.index(frame.len());
        frame[at] ^= 1 << bit;
        let intact = parse_header(&header_of(&frame)).ok().is_some_and(|(len, crc)| {
            frame.get(HEADER_LEN..HEADER_LEN + len).is_some_and(|p| crc32c::crc32c(p) == crc)
        });
        prop_assert!(!intact, "a flip at byte {} went unnoticed", at);
    }

    /// The skeleton kept for a sealed segment's index file says the same as the frame:
    /// each put becomes a reference to where its value lies, with the value's CRC.
    #[test]
    fn a_skeleton_points_at_each_value(specs in vec(spec(), 0..8), frame_pos in 0u64..(1 << 40)) {
        let frame = frame_of(&specs);
        let payload = &frame[HEADER_LEN..];
        let mut skeleton = Skeleton::default();
        let sketch = skeleton.add(frame_pos, payload).unwrap().to_vec();
        let expected: Vec<Spec> = decode_ops(payload)
            .unwrap()
            .iter()
            .map(|op| match *op {
                Op::Put { key, value_at, value_len } => {
                    let crc = crc32c::crc32c(&payload[value_at..value_at + value_len]);
                    Spec::PutRef(key.to_vec(), frame_pos + (HEADER_LEN + value_at) as u64, value_len as u32, crc)
                }
                ref other => owned(payload, other),
            })
            .collect();
        prop_assert_eq!(decode_checked(&sketch)?, Some(expected));
    }
}
