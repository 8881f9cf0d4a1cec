//! Tests of [`TidemarkRuntime`]. They use `#[tokio::test]`, which madsim-tokio maps to
//! madsim's test runtime under `--cfg madsim`, so each test runs in both builds.

use std::time::Duration;

use openraft::async_runtime::watch::SendError;
use openraft::async_runtime::Mpsc;
use openraft::async_runtime::MpscReceiver;
use openraft::async_runtime::MpscSender;
use openraft::async_runtime::Oneshot;
use openraft::async_runtime::OneshotSender;
use openraft::async_runtime::TryRecvError;
use openraft::async_runtime::Watch;
use openraft::async_runtime::WatchReceiver;
use openraft::async_runtime::WatchSender;
use openraft::AsyncRuntime;
use openraft::Instant as _;

use super::TidemarkInstant;
use super::TidemarkRuntime as Rt;

type W = <Rt as AsyncRuntime>::Watch;
type M = <Rt as AsyncRuntime>::Mpsc;
type O = <Rt as AsyncRuntime>::Oneshot;

const MS_10: Duration = Duration::from_millis(10);
const SEC_1: Duration = Duration::from_secs(1);

/// openraft's own conformance suite: spawn, timers, instants, select, mpsc, watch, oneshot,
/// mutex and task-locals, plus `block_on`. A plain `#[test]`, because the suite builds its
/// runtimes itself through `AsyncRuntime::new` / `block_on`.
#[test]
fn openraft_runtime_suite() {
    openraft::rt::testing::Suite::<Rt>::test_all();
}

#[tokio::test]
async fn spawn_returns_task_output() {
    let handle = Rt::spawn(async { 7_u32 });
    assert_eq!(handle.await.unwrap(), 7);
}

#[tokio::test]
async fn spawn_blocking_returns_closure_output() {
    let out = Rt::spawn_blocking(|| 6 * 7).await.unwrap();
    assert_eq!(out, 42);
}

#[tokio::test]
async fn sleep_and_sleep_until_wait_at_least_the_duration() {
    let start = TidemarkInstant::now();
    Rt::sleep(MS_10).await;
    assert!(start.elapsed() >= MS_10);

    let deadline = TidemarkInstant::now() + MS_10;
    Rt::sleep_until(deadline).await;
    assert!(TidemarkInstant::now() >= deadline);
}

#[tokio::test]
async fn timeout_returns_output_when_future_is_fast() {
    let out = Rt::timeout(SEC_1, async { 1_u8 }).await;
    assert_eq!(out, Ok(1));

    let deadline = TidemarkInstant::now() + SEC_1;
    let out = Rt::timeout_at(deadline, async {
        Rt::sleep(MS_10).await;
        2_u8
    })
    .await;
    assert_eq!(out, Ok(2));
}

#[tokio::test]
async fn timeout_fires_when_future_is_slow() {
    let start = TidemarkInstant::now();
    let out = Rt::timeout(MS_10, Rt::sleep(SEC_1)).await;
    let err = out.unwrap_err();
    assert_eq!(err.to_string(), "deadline has elapsed");
    let waited = start.elapsed();
    assert!(waited >= MS_10 && waited < SEC_1, "waited {waited:?}");

    let deadline = TidemarkInstant::now() + MS_10;
    let out = Rt::timeout_at(deadline, std::future::pending::<()>()).await;
    assert!(out.is_err());
}

#[tokio::test]
async fn timeout_prefers_a_ready_future_over_an_expired_deadline() {
    let past = TidemarkInstant::now();
    Rt::sleep(MS_10).await;
    assert_eq!(Rt::timeout_at(past, async { 3_u8 }).await, Ok(3));
}

#[tokio::test]
async fn thread_rng_produces_varying_values() {
    use rand::RngExt as _;

    let mut rng = Rt::thread_rng();
    let draws: Vec<u64> = (0..8).map(|_| rng.random()).collect();
    assert!(draws.windows(2).any(|w| w[0] != w[1]), "{draws:?}");
    let mut bytes = [0_u8; 32];
    rng.fill(&mut bytes[..]);
    assert!(bytes.iter().any(|b| *b != 0));
    for _ in 0..100 {
        assert!(rng.random_range(150..300_u64) < 300);
    }
}

#[tokio::test]
async fn watch_send_changed_borrow() {
    let (tx, mut rx) = W::channel(0_u32);
    assert_eq!(*rx.borrow_watched(), 0);

    tx.send(1).unwrap();
    assert_eq!(*tx.borrow_watched(), 1);
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow_watched(), 1);

    // The change was consumed, so the next `changed` waits for a new send.
    let pending = Rt::timeout(MS_10, rx.changed()).await;
    assert!(pending.is_err(), "changed() must wait after the value was seen");

    assert!(tx.send_if_modified(|v| {
        *v += 10;
        true
    }));
    assert!(!tx.send_if_modified(|_| false));
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow_and_update(), 11);
}

#[tokio::test]
async fn watch_wakes_a_waiting_receiver_from_another_task() {
    let (tx, mut rx) = W::channel(0_u32);
    let waiter = Rt::spawn(async move {
        rx.changed().await.unwrap();
        let value = *rx.borrow_watched();
        value
    });
    Rt::sleep(MS_10).await;
    tx.send(5).unwrap();
    assert_eq!(waiter.await.unwrap(), 5);
}

/// Several waiters on one channel: the path where tokio's RNG-picked notify slots broke
/// madsim determinism. Every waiter must wake, in a replayable order.
#[tokio::test]
async fn watch_wakes_every_waiting_receiver() {
    let (tx, rx) = W::channel(0_u32);
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let mut rx = rx.clone();
            Rt::spawn(async move {
                rx.changed().await.unwrap();
                let value = *rx.borrow_watched();
                value
            })
        })
        .collect();
    Rt::sleep(MS_10).await;
    tx.send(3).unwrap();
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), 3);
    }
}

#[tokio::test]
async fn watch_sender_drop_closes_receivers() {
    let (tx, mut rx) = W::channel(0_u32);
    let tx2 = tx.clone();
    let mut waiting_rx = rx.clone();
    let waiter = Rt::spawn(async move { waiting_rx.changed().await });

    drop(tx);
    Rt::sleep(MS_10).await;
    assert!(!waiter.is_finished(), "a live clone keeps the channel open");

    // A value sent right before the last sender drops is still delivered, then the error.
    tx2.send(9).unwrap();
    drop(tx2);
    assert!(waiter.await.unwrap().is_ok());
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow_watched(), 9);
    assert!(rx.changed().await.is_err());
}

#[tokio::test]
async fn watch_send_fails_without_receivers() {
    let (tx, rx) = W::channel(0_u32);
    drop(rx);
    assert_eq!(tx.send(1), Err(SendError(1)));
    assert_eq!(*tx.borrow_watched(), 0);

    // A fresh subscriber reopens the channel and starts with the current value seen.
    let mut rx = tx.subscribe();
    tx.send(2).unwrap();
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow_watched(), 2);
}

#[tokio::test]
async fn mpsc_send_recv_and_close() {
    let (tx, mut rx) = M::channel::<u32>(2);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));

    let tx2 = tx.clone();
    let producer = Rt::spawn(async move {
        for i in 0..5 {
            tx2.send(i).await.unwrap();
        }
    });
    for expected in 0..5 {
        assert_eq!(rx.recv().await, Some(expected));
    }
    producer.await.unwrap();

    drop(tx);
    assert_eq!(rx.recv().await, None);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[tokio::test]
async fn mpsc_send_fails_after_receiver_drop() {
    let (tx, rx) = M::channel::<u32>(1);
    drop(rx);
    let err = tx.send(3).await.unwrap_err();
    assert_eq!(err.0, 3);
}

#[tokio::test]
async fn oneshot_delivers_once_and_reports_drops() {
    let (tx, rx) = O::channel::<u32>();
    Rt::spawn(async move { tx.send(4).unwrap() }).await.unwrap();
    assert_eq!(rx.await.unwrap(), 4);

    let (tx, rx) = O::channel::<u32>();
    drop(tx);
    assert!(rx.await.is_err());

    let (tx, rx) = O::channel::<u32>();
    drop(rx);
    assert_eq!(tx.send(5), Err(5));
}

/// Under madsim the RNG must be the simulation's: the same seed gives the same draws.
#[cfg(madsim)]
#[test]
fn thread_rng_follows_the_madsim_seed() {
    use madsim::runtime::Runtime;
    use rand::RngExt as _;

    let draw = |seed: u64| -> Vec<u64> {
        let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.block_on(async {
            let mut rng = Rt::thread_rng();
            (0..4).map(|_| rng.random()).collect()
        })
    };
    assert_eq!(draw(1), draw(1));
    assert_ne!(draw(1), draw(2));
}
