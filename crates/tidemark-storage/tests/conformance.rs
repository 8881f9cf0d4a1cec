//! Both engines pass the same conformance suite (sled only outside madsim).

use std::sync::Arc;

use tidemark_storage::{conformance, MemoryEngine, SharedEngine};

#[test]
fn memory_engine_conforms() {
    conformance::run_all(&|| Arc::new(MemoryEngine::new()) as SharedEngine);
}

#[cfg(not(madsim))]
#[test]
fn sled_engine_conforms() {
    use std::cell::Cell;
    use tidemark_storage::SledEngine;

    // One temp dir for the whole run; each check gets its own database under it.
    let root = tempfile::tempdir().unwrap();
    let next = Cell::new(0u32);
    conformance::run_all(&|| {
        let n = next.get();
        next.set(n + 1);
        let engine = SledEngine::open(&root.path().join(format!("db-{n}"))).unwrap();
        Arc::new(engine) as SharedEngine
    });
}
