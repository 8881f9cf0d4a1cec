//! Seeds that once found a bug in the product. The CI run always includes them, so a fix
//! that regresses is caught by the exact fault schedule that found it.

/// `(seed, what it found)`.
pub const REGRESSION_SEEDS: &[(u64, &str)] = &[];
