//! Planted bugs, for the simulation's checker self-tests only: a checker that never fails
//! proves nothing, so the simulation switches one of these on and must catch it.
//!
//! The switches exist only under `--cfg madsim` (one of the named `cfg(madsim)` places)
//! and are thread-local, because the seed runner runs one simulation per OS thread and
//! every simulated node of a run lives on that run's thread. Off, they cost one branch.

/// The bug: a partition group's state machine skips a command that directly follows a
/// blank (leader-change) entry in the same apply batch, as if the blank entry reset a
/// cursor. Which entries share an apply batch differs between replicas (and a restarted
/// replica re-applies its whole log in one batch), so replicas assign different offsets.
#[cfg(madsim)]
mod switches {
    use std::cell::Cell;

    thread_local! {
        static SKIP_AFTER_BLANK: Cell<bool> = const { Cell::new(false) };
        static VOTE_WHILE_REPAIRING: Cell<bool> = const { Cell::new(false) };
    }

    pub fn set_vote_while_repairing(on: bool) {
        VOTE_WHILE_REPAIRING.with(|s| s.set(on));
    }

    pub fn vote_while_repairing() -> bool {
        VOTE_WHILE_REPAIRING.with(Cell::get)
    }

    pub fn set_skip_after_blank(on: bool) {
        SKIP_AFTER_BLANK.with(|s| s.set(on));
    }

    pub fn skip_after_blank() -> bool {
        SKIP_AFTER_BLANK.with(Cell::get)
    }
}

#[cfg(madsim)]
pub use switches::{set_skip_after_blank, set_vote_while_repairing};

/// The bug: a replica repairing after disk damage answers vote requests as if its log
/// were whole (see `crate::repair`), so a leader that lacks an entry it acknowledged can
/// be elected with its vote.
pub(crate) fn vote_while_repairing() -> bool {
    #[cfg(madsim)]
    {
        switches::vote_while_repairing()
    }
    #[cfg(not(madsim))]
    {
        false
    }
}

/// Whether a group started now gets the planted skip-after-blank bug (never the
/// metadata group: the bug is meant to corrupt partition data, not cluster setup).
pub(crate) fn skip_after_blank(group: tidemark_types::GroupId) -> bool {
    #[cfg(madsim)]
    {
        group != tidemark_types::METADATA_GROUP && switches::skip_after_blank()
    }
    #[cfg(not(madsim))]
    {
        let _ = group;
        false
    }
}
