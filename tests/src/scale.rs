//! What the group scale tests share: a member task told to run, close or die, and a
//! producer that writes waves of records until told to stop.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tidemark_client::Client;
use tidemark_simulation::workload::{produce, Acked};
use tokio::task::JoinHandle;

/// What a member task reads from its control between polls.
pub const RUN: u8 = 0;
/// Leave the group gracefully (commit, leave).
pub const CLOSE: u8 = 1;
/// Vanish without committing or leaving, as a crashed process would.
pub const KILL: u8 = 2;

/// A running member: its control word and its task.
pub struct Member {
    pub control: Arc<AtomicU8>,
    pub task: JoinHandle<()>,
}

impl Member {
    /// Tells the member to `CLOSE` or `KILL` itself and waits up to `within` for it.
    pub async fn stop(&mut self, how: u8, within: Duration) {
        self.control.store(how, Ordering::SeqCst);
        tokio::time::timeout(within, &mut self.task).await.expect("member stops in time").expect("member task");
    }
}

/// Produces waves of 100 records to `topic` every 100 ms until `stop`; returns every
/// acknowledged one.
pub fn wave_producer(client: &Client, topic: &'static str, stop: Arc<AtomicBool>) -> JoinHandle<Acked> {
    let client = client.clone();
    tokio::spawn(async move {
        let (mut acked, mut next) = (Acked::new(), 0u32);
        while !stop.load(Ordering::SeqCst) {
            let (wave, _failed) = produce(&client, topic, next..next + 100).await;
            acked.extend(wave);
            next += 100;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        acked
    })
}
