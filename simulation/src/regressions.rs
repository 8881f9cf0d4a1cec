//! Seeds that once found a bug in the product. The CI run always includes them, so a fix
//! that regresses is caught by the exact fault schedule that found it.

/// `(seed, what it found)`.
pub const REGRESSION_SEEDS: &[(u64, &str)] = &[
    (1, "partition 0 of the first topic shared Raft group 0 with the metadata group"),
    (4, "Consumer::poll deadlocked: a metadata refresh waited for a lock held by its own unpolled fetch"),
    (1611, "Consumer::poll deadlocked the same way while resolving an offset reset"),
    (129, "GroupConsumer::close took >30 s: commit and leave each retried for operation_timeout while all nodes were down"),
    (282, "GroupConsumer::close took >30 s the same way"),
    (140, "a group stopped for good: an unpolled fetch of a reader with no partitions held the metadata-refresh lock"),
    (2, "an acknowledged record lost: a leader restored after a crash reused a log id it had already replicated"),
    (43, "replicas diverged the same way (leader restore in the same term), with pipelined replication"),
    (14, "a replica never restarted: a crash between a durable purged mark and its deletes left the log below the mark"),
];
