//! [`WriteBatch`]: the unit of atomic writes within one tree.

/// One operation of a [`WriteBatch`], public so engines outside this crate can apply one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
}

impl BatchOp {
    /// The key this operation touches.
    pub fn key(&self) -> &[u8] {
        match self {
            BatchOp::Put { key, .. } | BatchOp::Delete { key } => key,
        }
    }
}

/// One atomic write within ONE tree: all of its puts/deletes become visible together.
///
/// Operations apply in insertion order, so a later operation on the same key wins (a put
/// followed by a delete of that key leaves it absent).
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Put { key: key.into(), value: value.into() });
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Delete { key: key.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The number of operations (not distinct keys).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The operations in insertion order.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Consumes the batch, yielding its operations in insertion order.
    pub fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }
}
