//! The on-disk frame of the segment log: one frame per atomic write.
//!
//! ```text
//! frame   = magic u32 | payload_len u32 | crc32c(payload) u32 | payload
//! payload = op*
//! op      = 1 key_len u16 key value_len u32 value        (put)
//!         | 2 key_len u16 key                            (delete)
//!         | 3 start_len u16 start has_end u8 [end_len u16 end]   (delete range)
//!         | 4 segment u64 len u64                        (synced mark)
//!         | 5 key_len u16 key pos u64 len u32 crc u32      (put by reference: index files only)
//! ```
//!
//! A synced mark says "the first `len` bytes of segment `segment` were fsynced". It is
//! written lazily, ahead of the first write after each sync (and at the start of each new
//! segment, for the one just sealed), so it costs no fsync of its own. Recovery uses it to
//! tell damage to synced data from a write torn by a crash (see `recover.rs`).
//!
//! All integers are little-endian. The CRC covers the whole payload, so recovery applies
//! a frame entirely or not at all: a write torn by a crash is simply absent.

use crate::{BatchOp, Result, StorageError};

pub const MAGIC: u32 = 0x544d_5347; // "TMSG"
pub const HEADER_LEN: usize = 12;
/// A frame larger than this is corruption, not data: it bounds what a damaged length
/// field can make recovery allocate.
pub const MAX_PAYLOAD: usize = 1 << 30;

const PUT: u8 = 1;
const DELETE: u8 = 2;
const DELETE_RANGE: u8 = 3;
const SYNCED: u8 = 4;
const PUT_REF: u8 = 5;

/// One decoded operation. Values are not copied: a put names where its value lies in
/// the payload, which is where the index points readers.
#[derive(Debug, PartialEq, Eq)]
pub enum Op<'a> {
    Put {
        key: &'a [u8],
        value_at: usize,
        value_len: usize,
    },
    Delete {
        key: &'a [u8],
    },
    DeleteRange {
        start: &'a [u8],
        end: Option<&'a [u8]>,
    },
    Synced {
        segment: u64,
        len: u64,
    },
    /// A put whose value is not here but at `pos` in the segment an index file describes.
    PutRef {
        key: &'a [u8],
        pos: u64,
        len: u32,
        crc: u32,
    },
}

/// Builds one frame. Keys longer than u16::MAX bytes are refused (log keys are 16).
pub struct FrameBuilder {
    buf: Vec<u8>,
}

impl FrameBuilder {
    pub fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER_LEN + capacity);
        buf.resize(HEADER_LEN, 0);
        FrameBuilder { buf }
    }

    fn key(&mut self, key: &[u8]) -> Result<()> {
        let len = u16::try_from(key.len()).map_err(|_| StorageError::Internal {
            op: "write",
            message: format!("key of {} bytes is longer than the segment log's limit of 65535", key.len()),
        })?;
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(key);
        Ok(())
    }

    pub fn op(&mut self, op: &BatchOp) -> Result<()> {
        match op {
            BatchOp::Put { key, value } => {
                self.buf.push(PUT);
                self.key(key)?;
                let len = u32::try_from(value.len()).map_err(|_| StorageError::Internal {
                    op: "write",
                    message: format!("value of {} bytes is too large for one log entry", value.len()),
                })?;
                self.buf.extend_from_slice(&len.to_le_bytes());
                self.buf.extend_from_slice(value);
            }
            BatchOp::Delete { key } => {
                self.buf.push(DELETE);
                self.key(key)?;
            }
        }
        Ok(())
    }

    pub fn delete_range(&mut self, start: &[u8], end: Option<&[u8]>) -> Result<()> {
        self.buf.push(DELETE_RANGE);
        self.key(start)?;
        match end {
            Some(end) => {
                self.buf.push(1);
                self.key(end)?;
            }
            None => self.buf.push(0),
        }
        Ok(())
    }

    pub fn synced(&mut self, segment: u64, len: u64) {
        self.buf.push(SYNCED);
        self.buf.extend_from_slice(&segment.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
    }

    pub fn put_ref(&mut self, key: &[u8], pos: u64, len: u32, crc: u32) -> Result<()> {
        self.buf.push(PUT_REF);
        self.key(key)?;
        self.buf.extend_from_slice(&pos.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// Seals the frame: fills in the header. Offsets of values within the returned bytes
    /// are what [`decode_ops`] reports plus [`HEADER_LEN`].
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let payload_len = self.buf.len() - HEADER_LEN;
        if payload_len > MAX_PAYLOAD {
            return Err(StorageError::Internal {
                op: "write",
                message: format!("one write of {payload_len} bytes exceeds the segment log's 1 GiB frame limit"),
            });
        }
        let crc = crc32c::crc32c(&self.buf[HEADER_LEN..]);
        self.buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        self.buf[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
        self.buf[8..12].copy_from_slice(&crc.to_le_bytes());
        Ok(self.buf)
    }
}

/// What a frame header says: the payload length and CRC, or why it is not a frame.
pub fn parse_header(header: &[u8; HEADER_LEN]) -> std::result::Result<(usize, u32), &'static str> {
    let word = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if word(0) != MAGIC {
        return Err("bad magic");
    }
    let len = word(4) as usize;
    if len > MAX_PAYLOAD {
        return Err("impossible length");
    }
    Ok((len, word(8)))
}

/// Decodes a payload whose CRC has been checked. An Err means a bug or a CRC collision:
/// the payload is not something [`FrameBuilder`] wrote.
pub fn decode_ops(payload: &[u8]) -> std::result::Result<Vec<Op<'_>>, &'static str> {
    let mut ops = Vec::new();
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> std::result::Result<&[u8], &'static str> {
        let bytes = payload.get(*at..*at + n).ok_or("truncated op")?;
        *at += n;
        Ok(bytes)
    };
    let key = |at: &mut usize| -> std::result::Result<&[u8], &'static str> {
        let len = take(at, 2)?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        take(at, len)
    };
    while at < payload.len() {
        let kind = take(&mut at, 1)?[0];
        let op = match kind {
            PUT => {
                let k = key(&mut at)?;
                let len = take(&mut at, 4)?;
                let value_len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
                let value_at = at;
                take(&mut at, value_len)?;
                Op::Put { key: k, value_at, value_len }
            }
            DELETE => Op::Delete { key: key(&mut at)? },
            DELETE_RANGE => {
                let start = key(&mut at)?;
                let end = match take(&mut at, 1)?[0] {
                    0 => None,
                    1 => Some(key(&mut at)?),
                    _ => return Err("bad range end flag"),
                };
                Op::DeleteRange { start, end }
            }
            SYNCED => {
                let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                let segment = word(take(&mut at, 8)?);
                Op::Synced { segment, len: word(take(&mut at, 8)?) }
            }
            PUT_REF => {
                let k = key(&mut at)?;
                let pos = u64::from_le_bytes(take(&mut at, 8)?.try_into().unwrap_or([0; 8]));
                let int = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or([0; 4]));
                let len = int(take(&mut at, 4)?);
                Op::PutRef { key: k, pos, len, crc: int(take(&mut at, 4)?) }
            }
            _ => return Err("unknown op"),
        };
        ops.push(op);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_decodes_to_the_ops_it_was_built_from() {
        let mut b = FrameBuilder::new(64);
        b.op(&BatchOp::Put { key: b"k1".to_vec(), value: b"value".to_vec() }).unwrap();
        b.op(&BatchOp::Delete { key: b"k0".to_vec() }).unwrap();
        b.delete_range(b"a", Some(b"b")).unwrap();
        b.delete_range(b"x", None).unwrap();
        b.synced(7, 1 << 40);
        b.put_ref(b"k2", 1 << 33, 70, 0xdead_beef).unwrap();
        let frame = b.finish().unwrap();
        let header: [u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().unwrap();
        let (len, crc) = parse_header(&header).unwrap();
        let payload = &frame[HEADER_LEN..];
        assert_eq!(len, payload.len());
        assert_eq!(crc, crc32c::crc32c(payload));
        let ops = decode_ops(payload).unwrap();
        let Op::Put { key, value_at, value_len } = ops[0] else { panic!("expected a put, got {:?}", ops[0]) };
        assert_eq!(key, b"k1");
        assert_eq!(&payload[value_at..value_at + value_len], b"value");
        assert_eq!(ops[1], Op::Delete { key: b"k0" });
        assert_eq!(ops[2], Op::DeleteRange { start: b"a", end: Some(b"b") });
        assert_eq!(ops[3], Op::DeleteRange { start: b"x", end: None });
        assert_eq!(ops[4], Op::Synced { segment: 7, len: 1 << 40 });
        assert_eq!(ops[5], Op::PutRef { key: b"k2", pos: 1 << 33, len: 70, crc: 0xdead_beef });
    }

    #[test]
    fn damaged_headers_and_payloads_are_refused() {
        let mut header = [0u8; HEADER_LEN];
        assert_eq!(parse_header(&header), Err("bad magic"));
        header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        header[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_header(&header), Err("impossible length"));
        assert_eq!(decode_ops(&[PUT, 5, 0, b'a']), Err("truncated op"));
        assert_eq!(decode_ops(&[9]), Err("unknown op"));
    }

    #[test]
    fn oversized_keys_are_an_error_not_a_panic() {
        let mut b = FrameBuilder::new(0);
        let err = b.op(&BatchOp::Delete { key: vec![0; 70_000] }).unwrap_err();
        assert!(err.to_string().contains("65535"), "{err}");
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod fuzz;
