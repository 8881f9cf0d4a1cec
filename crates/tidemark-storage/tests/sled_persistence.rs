//! sled keeps flushed data across close / reopen of the same directory.
#![cfg(not(madsim))]

use tidemark_storage::{Engine, SledEngine, WriteBatch};

#[test]
fn flushed_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = SledEngine::open(dir.path()).unwrap();
        engine.put("log", &1u64.to_be_bytes(), b"one").unwrap();
        let mut batch = WriteBatch::new();
        batch.put(2u64.to_be_bytes(), b"two".to_vec());
        batch.put(3u64.to_be_bytes(), b"three".to_vec());
        engine.write("log", batch).unwrap();
        engine.put("meta", b"vote", b"term-7").unwrap();
        engine.put("meta", b"gone", b"x").unwrap();
        engine.delete("meta", b"gone").unwrap();
        engine.delete_range("log", &1u64.to_be_bytes(), Some(&2u64.to_be_bytes())).unwrap();
        engine.flush().unwrap();
    }
    let engine = SledEngine::open(dir.path()).unwrap();
    let log = engine.range("log", b"", None, 10).unwrap();
    assert_eq!(
        log,
        vec![(2u64.to_be_bytes().to_vec(), b"two".to_vec()), (3u64.to_be_bytes().to_vec(), b"three".to_vec()),]
    );
    assert_eq!(engine.get("meta", b"vote").unwrap(), Some(b"term-7".to_vec()));
    assert_eq!(engine.get("meta", b"gone").unwrap(), None);
}

#[test]
fn reopen_twice_and_keep_writing() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0u64..3 {
        let engine = SledEngine::open(dir.path()).unwrap();
        let have = engine.range("t", b"", None, 100).unwrap();
        assert_eq!(have.len() as u64, round, "round {round} sees earlier rounds");
        engine.put("t", &round.to_be_bytes(), b"v").unwrap();
        engine.flush().unwrap();
    }
}

#[test]
fn open_on_a_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"hello").unwrap();
    let err = SledEngine::open(&file).unwrap_err();
    assert!(err.to_string().contains("open"), "error names the operation: {err}");
}

#[test]
fn second_live_open_of_one_dir_fails() {
    let dir = tempfile::tempdir().unwrap();
    let first = SledEngine::open(dir.path()).unwrap();
    let err = SledEngine::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("lock"), "{err}");
    first.put("t", b"k", b"v").unwrap();
    first.flush().unwrap();
}
