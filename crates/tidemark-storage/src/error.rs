//! Storage errors. Every variant is fatal for the caller's durability reasoning except
//! where noted; the variants exist so logs and metrics say *what* failed, not to invite
//! retries.

/// The storage layer's result type.
pub type Result<T> = std::result::Result<T, StorageError>;

/// What went wrong in the engine. Messages are strings (not the source error) so the
/// error is `Clone` and can be fanned out to every waiter of a group commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// A read or write failed at the OS / file level.
    #[error("storage I/O error during {op}: {message}")]
    Io { op: &'static str, message: String },

    /// `flush` failed: whether earlier writes reached the disk is unknown, so the node
    /// must stop rather than acknowledge anything (retrying fsync after a failure is not
    /// safe on Linux: the kernel may already have dropped the dirty pages).
    #[error("fsync failed, durability of recent writes is unknown: {message}")]
    FsyncFailed { message: String },

    /// The engine found data on disk it cannot interpret.
    #[error("storage corruption detected during {op}: {message}")]
    Corrupt { op: &'static str, message: String },

    /// The engine reported misuse or an internal bug (e.g. sled's `Unsupported` or
    /// `ReportableBug`).
    #[error("storage engine internal error during {op}: {message}")]
    Internal { op: &'static str, message: String },

    /// The engine has been shut down; reserved for engines with an explicit close.
    #[error("storage engine is closed")]
    Closed,
}
