//! [`Acks`]: awaits the delivery futures of a sending loop on a task of its own.
//!
//! ```text
//! sending loop ──(tag, DeliveryFuture)──▶ channel ──▶ collector task: FuturesUnordered
//!                                                        └─▶ on_ack(tag, result)
//! ```
//!
//! Why not poll them inline after each send: tokio's cooperative budget makes a oneshot
//! that is polled after the budget ran out return Pending and wake itself, so every
//! inline `now_or_never` poll went over every such future again. With 100k records in
//! flight that loop, not the cluster, was the bottleneck (a profile of `bench produce`
//! showed 70% of the client's core in FuturesUnordered wake-ups, the cluster at 13%).

use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use tidemark_client::{ClientError, DeliveryFuture, RecordMetadata};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub type Delivery = Result<RecordMetadata, ClientError>;

/// Handle to the collector; [`Acks::finish`] waits for every pushed future.
pub struct Acks<T, S> {
    tx: mpsc::UnboundedSender<(T, DeliveryFuture)>,
    task: JoinHandle<S>,
}

impl<T: Send + 'static, S: Send + 'static> Acks<T, S> {
    /// Starts the collector; it runs `on_ack(&mut state, tag, result)` once per future,
    /// as each completes.
    pub fn spawn(state: S, on_ack: impl FnMut(&mut S, T, Delivery) + Send + 'static) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Acks { tx, task: tokio::spawn(collect(rx, state, on_ack)) }
    }

    pub fn push(&self, tag: T, delivery: DeliveryFuture) {
        // The collector only stops after `finish` drops the sender, so this cannot fail.
        let _ = self.tx.send((tag, delivery));
    }

    /// Waits until every pushed future has completed; returns the state `on_ack` built.
    pub async fn finish(self) -> S {
        drop(self.tx);
        self.task.await.expect("the ack collector does not panic")
    }
}

async fn collect<T, S>(
    mut rx: mpsc::UnboundedReceiver<(T, DeliveryFuture)>,
    mut state: S,
    mut on_ack: impl FnMut(&mut S, T, Delivery),
) -> S {
    let mut pending = FuturesUnordered::new();
    let mut open = true;
    while open || !pending.is_empty() {
        tokio::select! {
            biased;
            Some((tag, result)) = pending.next(), if !pending.is_empty() => on_ack(&mut state, tag, result),
            msg = rx.recv(), if open => match msg {
                Some((tag, fut)) => pending.push(fut.map(move |r| (tag, r))),
                None => open = false,
            },
        }
    }
    state
}
