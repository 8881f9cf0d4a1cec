//! Property tests of the record batch decoders, which read bytes from producers (through
//! [`BatchHeader::validate`]), from replicas and from the disk (through [`decode_records`],
//! [`record_ttl_deadlines`] and [`BatchHeader::read`]). No input may panic them or make
//! them reserve memory by what a count field claims; a damaged batch must never pass
//! validation.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use tidemark_types::batch::{
    decode_records, record_ttl_deadlines, restamp, BatchError, BatchHeader, BatchLimits, Header, Record,
    RecordBatchBuilder, HEADER_LEN, MAGIC, TTL_HEADER,
};
use tidemark_types::TopicName;

/// The smallest encoded record: timestamp delta, key length, value length, header count.
const RECORD_FIXED_LEN: usize = 4 + 4 + 4 + 2;
/// Where the record count sits in the header (see the layout in `batch.rs`).
const COUNT_AT: usize = 21;

fn header() -> impl Strategy<Value = Header> {
    let key = prop_oneof![Just(TTL_HEADER.to_string()), ".{0,8}"];
    let value = prop_oneof![(0i64..10_000).prop_map(|ms| ms.to_string().into_bytes()), vec(any::<u8>(), 0..16)];
    (key, value).prop_map(|(key, value)| Header { key, value: Bytes::from(value) })
}

/// Records whose timestamps lie within `i32::MAX` ms of each other: the encoding stores
/// each as a 32-bit delta from the batch's first timestamp.
fn records() -> impl Strategy<Value = Vec<Record>> {
    let record = |base: i64| {
        (
            proptest::option::of(vec(any::<u8>(), 0..32)),
            vec(any::<u8>(), 0..64),
            vec(header(), 0..3),
            0..=i32::MAX as i64,
        )
            .prop_map(move |(key, value, headers, after)| Record {
                key: key.map(Bytes::from),
                value: Bytes::from(value),
                headers,
                timestamp_ms: base + after,
            })
    };
    (-(1i64 << 40)..(1i64 << 42)).prop_flat_map(move |base| vec(record(base), 1..6))
}

fn build(records: &[Record], producer: Option<(i64, i16, i32)>) -> Bytes {
    let mut b = RecordBatchBuilder::new();
    for r in records {
        b.push(r.clone());
    }
    b.build(producer)
}

/// `bytes` with its CRC recomputed, as a client that wants its garbage validated would.
fn with_good_crc(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() >= 5 {
        let crc = crc32c::crc32c(&bytes[5..]);
        bytes[1..5].copy_from_slice(&crc.to_le_bytes());
    }
    bytes
}

/// Every decoder on `bytes`: none may panic, and what validation accepts the others must
/// read in full, finding as many records as the header says.
fn check_all_decoders(bytes: &[u8]) -> Result<(), TestCaseError> {
    let limits = BatchLimits::default();
    let validated = BatchHeader::validate(bytes, &limits);
    let read = BatchHeader::read(bytes);
    let shared = Bytes::copy_from_slice(bytes);
    let decoded = decode_records(&shared);
    let deadlines = record_ttl_deadlines(bytes);
    let _ = restamp(bytes, (1, 2, 3));
    if let Ok(records) = &decoded {
        // One record is at least RECORD_FIXED_LEN bytes, so the list may not reserve room
        // for more than (twice, as a Vec grows) what the bytes can hold, whatever the
        // count field says.
        prop_assert!(records.capacity() <= (2 * bytes.len() / RECORD_FIXED_LEN).max(4), "{}", records.capacity());
    }
    if let Ok(header) = validated {
        prop_assert_eq!(Ok(header), read);
        let records = decoded.map_err(|e| TestCaseError::fail(format!("validated, then undecodable: {e}")))?;
        prop_assert_eq!(records.len(), header.record_count as usize);
        prop_assert!(records.iter().all(|r| r.payload_len() <= limits.max_record_bytes));
        prop_assert!(deadlines.is_ok(), "validated, then the TTL scan failed: {:?}", deadlines);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// What the producer encodes, the server validates and every reader decodes as it was.
    #[test]
    fn a_built_batch_round_trips(records in records(), producer in proptest::option::of(any::<(i64, i16, i32)>())) {
        let bytes = build(&records, producer);
        let header = BatchHeader::validate(&bytes, &BatchLimits::default()).unwrap();
        let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
        prop_assert_eq!((header.producer_id, header.producer_epoch, header.base_sequence), (pid, epoch, seq));
        prop_assert_eq!(header.record_count as usize, records.len());
        prop_assert_eq!(header.first_timestamp, records.iter().map(|r| r.timestamp_ms).min().unwrap());
        prop_assert_eq!(header.max_timestamp, records.iter().map(|r| r.timestamp_ms).max().unwrap());
        prop_assert_eq!(decode_records(&bytes).unwrap(), records.clone());
        let with_ttl = records.iter().flat_map(|r| &r.headers).filter(|h| h.key == TTL_HEADER).count();
        prop_assert!(record_ttl_deadlines(&bytes).unwrap().len() <= with_ttl);
        check_all_decoders(&bytes)?;
    }

    /// A batch cut short anywhere fails validation; the trusting decoder either fails or
    /// returns the records before the cut, never a made-up one.
    #[test]
    fn every_truncation_is_refused(records in records(), cut in any::<prop::sample::Index>()) {
        let bytes = build(&records, None);
        let cut = &bytes[..cut.index(bytes.len())];
        prop_assert!(BatchHeader::validate(cut, &BatchLimits::default()).is_err());
        if let Ok(prefix) = decode_records(&Bytes::copy_from_slice(cut)) {
            prop_assert!(prefix.len() < records.len());
            prop_assert_eq!(&prefix[..], &records[..prefix.len()]);
        }
        check_all_decoders(cut)?;
    }

    /// Any single flipped bit, header or records, fails validation (the magic byte is
    /// checked, the CRC covers the rest).
    #[test]
    fn every_bit_flip_is_refused(records in records(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = build(&records, Some((7, 1, 0))).to_vec();
        let at = at.index(bytes.len());
        bytes[at] ^= 1 << bit;
        prop_assert!(BatchHeader::validate(&bytes, &BatchLimits::default()).is_err());
        check_all_decoders(&bytes)?;
    }

    /// A count field claiming anything (2^32 - 1 records in a small batch) costs nothing:
    /// validation says the count is wrong, the trusting decoder reads what is there.
    #[test]
    fn a_lying_record_count_is_caught_and_costs_nothing(records in records(), claimed: u32) {
        let mut bytes = build(&records, None).to_vec();
        bytes[COUNT_AT..COUNT_AT + 4].copy_from_slice(&claimed.to_le_bytes());
        let bytes = with_good_crc(bytes);
        let validated = BatchHeader::validate(&bytes, &BatchLimits::default());
        if claimed as usize == records.len() {
            prop_assert!(validated.is_ok());
        } else if claimed == 0 {
            prop_assert_eq!(validated, Err(BatchError::Empty));
        } else {
            prop_assert_eq!(validated, Err(BatchError::CountMismatch { declared: claimed, found: records.len() as u32 }));
        }
        prop_assert_eq!(decode_records(&Bytes::from(bytes.clone())).unwrap(), records);
        check_all_decoders(&bytes)?;
    }

    /// Arbitrary bytes behind a valid magic byte and CRC, so they reach the record walk.
    #[test]
    fn garbage_with_a_good_crc_never_panics(body in vec(any::<u8>(), 0..256), count in 0u32..8) {
        let mut bytes = vec![MAGIC, 0, 0, 0, 0];
        bytes.extend_from_slice(&body);
        if bytes.len() >= HEADER_LEN {
            bytes[5..7].copy_from_slice(&[0, 0]);
            bytes[COUNT_AT..COUNT_AT + 4].copy_from_slice(&count.to_le_bytes());
        }
        check_all_decoders(&with_good_crc(bytes))?;
    }

    /// Arbitrary bytes, magic and CRC included.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..128)) {
        check_all_decoders(&bytes)?;
    }

    /// A topic name from the wire (including through serde) is checked, never a panic.
    #[test]
    fn topic_names_are_validated_not_trusted(name in ".{0,260}") {
        let parsed = TopicName::new(name.clone());
        let fine = !name.is_empty()
            && name.len() <= 249
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && name != "."
            && name != "..";
        prop_assert_eq!(parsed.is_ok(), fine);
        let via_serde: Result<TopicName, _> = serde::de::Deserialize::deserialize(
            serde::de::value::StringDeserializer::<serde::de::value::Error>::new(name),
        );
        prop_assert_eq!(via_serde.is_ok(), fine);
    }
}

/// A record claiming a 2 GiB key in a 60-byte batch is refused, not allocated.
#[test]
fn a_huge_key_length_is_refused() {
    // A header, so the TTL scan walks the records rather than trusting "no headers".
    let headers = vec![Header { key: TTL_HEADER.into(), value: Bytes::from_static(b"5") }];
    let record = Record { key: Some(Bytes::from_static(b"k")), headers, ..Default::default() };
    let mut bytes = build(&[record], None).to_vec();
    bytes[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&i32::MAX.to_le_bytes());
    let bytes = with_good_crc(bytes);
    let err = BatchHeader::validate(&bytes, &BatchLimits::default()).unwrap_err();
    assert!(matches!(err, BatchError::Malformed { what: "field runs past the end", .. }), "{err}");
    assert!(decode_records(&Bytes::from(bytes.clone())).is_err());
    assert!(record_ttl_deadlines(&bytes).is_err());
}
